//! The single integration test binary: the real daemon against the simulator on 127.0.0.1.
