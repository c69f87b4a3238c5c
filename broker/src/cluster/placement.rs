//! Who leads what: the live brokers and, per partition, the leader Metadata shows (rendezvous
//! hashing over live brokers). Any broker serves any partition; this only spreads load.
