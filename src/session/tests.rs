//! Unit tests of the session's reply mapping.

use super::*;
use nix::errno::Errno;

fn io(errno: Errno) -> DeliveryError {
    std::io::Error::from_raw_os_error(errno as i32).into()
}

#[test]
fn delivery_errors_map_to_transient_or_permanent_replies() {
    for (error, code, enhanced) in [
        (io(Errno::ENOSPC), 452, (4, 3, 1)),
        (io(Errno::EDQUOT), 452, (4, 3, 1)),
        (
            DeliveryError::InsufficientStorage("db".into()),
            452,
            (4, 3, 1),
        ),
        (io(Errno::EROFS), 451, (4, 3, 0)),
        (io(Errno::EACCES), 451, (4, 3, 0)),
        (io(Errno::EIO), 451, (4, 3, 0)),
        (DeliveryError::Temporary("later".into()), 451, (4, 3, 0)),
        (DeliveryError::Permanent("never".into()), 554, (5, 3, 0)),
    ] {
        let reply = delivery_error_reply(&error);
        let got = reply.enhanced.map(|e| (e.0, e.1, e.2));
        assert_eq!((reply.code, got), (code, Some(enhanced)), "{error}");
        assert!(!reply.close, "{error}: the session goes on");
    }
}
