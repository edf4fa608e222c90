//! Client of graphbrokerd. (Being built.)
