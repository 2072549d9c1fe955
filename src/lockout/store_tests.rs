//! What every `LockoutStore` must do, shared by the memory and Redis tests.

use super::{LockoutStore, Policy, Status, Subject};

/// With a policy of 3 failures: the first two count without locking, the third
/// locks, and `status` then says the same.
pub(super) async fn the_third_failure_locks(store: &dyn LockoutStore, subject: &Subject) {
    let policy = Policy::new(3, std::time::Duration::from_secs(600));
    for failures in 1..=3 {
        let status = store.record_failure(subject, &policy).await.unwrap();
        assert_eq!(
            status,
            Status {
                failures,
                locked: failures == 3
            }
        );
        if failures == 2 {
            assert!(!store.status(subject).await.unwrap().locked);
        }
    }
    assert_eq!(
        store.status(subject).await.unwrap(),
        Status {
            failures: 3,
            locked: true
        }
    );
}
