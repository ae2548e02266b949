//! stub: the simulated world (being written).

pub mod net;
