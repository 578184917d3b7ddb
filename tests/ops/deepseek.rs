//! The lightning indexer and the hyper-connections.
