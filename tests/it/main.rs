//! The one integration test binary. Each module drives real processes on loopback: the
//! MaxCompute emulator (shared by most tests, started once) and pyodps as the referee.

mod emulator;
mod maxcompute;
mod rows;
