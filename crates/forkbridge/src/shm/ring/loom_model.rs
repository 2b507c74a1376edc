//! Model checks (`checks/loom`) of the public ring: a producer blocked on a
//! full ring and a consumer blocked on an empty one, with the doorbells and
//! sleeper counts deciding who wakes whom (a lost wake-up is a deadlock loom
//! reports: the model has no timeouts to hide it).

use super::*;

#[test]
fn frames_flow_in_order_through_a_full_ring() {
    loom::model(|| {
        let ring = FrameRing::new(1, 4).unwrap().with_spin(Duration::ZERO);
        let producer_ring = ring.clone();
        let producer = loom::thread::spawn(move || {
            let mut p = producer_ring.producer().unwrap();
            for frame in 0..2u8 {
                let mut slot = p.acquire().unwrap();
                slot[0] = frame;
                slot.commit(1).unwrap();
            }
        });
        let mut c = ring.consumer().unwrap();
        for frame in 0..2u8 {
            let slot = c.recv().unwrap();
            assert_eq!(slot[0], frame);
            drop(slot);
        }
        producer.join().unwrap();
    });
}
