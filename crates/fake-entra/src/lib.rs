//! A strict local stand-in for the Microsoft identity platform. (Being built.)
