//! The graphbroker daemon. (Being built.)
