//! placeholder until the example lands
