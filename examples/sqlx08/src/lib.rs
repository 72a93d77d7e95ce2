//! Nothing: the example is in tests/.
