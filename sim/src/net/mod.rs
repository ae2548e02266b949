//! Network-fault simulations with turmoil (owned by the turmoil work; stub for now).
