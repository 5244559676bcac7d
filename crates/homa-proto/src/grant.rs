//! Receiver-side scheduling: which incoming messages get granted, how far,
//! and at which priority.

use crate::endpoint::Endpoint;
use crate::rpc::msgin::GRANT_SLACK;
use crate::rpc::Probe;
use crate::wire::{Body, GrantHeader};

impl Endpoint {
    /// Lowers a grant target so the buffer it needs fits the receive-memory
    /// budgets, charges the growth, and raises the message's grant. Returns
    /// the grant to send, or `None` (and parks the message until memory
    /// frees) if nothing more can be granted.
    pub(crate) fn fit_grant_to_memory(&mut self, key: usize, seq: u64, target: u32) -> Option<u32> {
        let peer = self.rpcs[key].peer;
        let avail = self.rx_available(peer);
        let m = self.rpcs[key].msgin.as_mut()?;
        let mut target = target;
        if m.growth_for(target) as u64 > avail {
            // Largest grant whose buffer fits: the buffer extends GRANT_SLACK
            // past the grant.
            let cap = (m.buffer_len() as u64 + avail).saturating_sub(GRANT_SLACK as u64);
            target = target.min(cap.min(u32::MAX as u64) as u32);
        }
        if target <= m.granted() {
            self.rx_waiters.push((key, seq));
            self.stats.grants_deferred_memory += 1;
            return None;
        }
        let before = m.granted();
        let grow = m.set_granted(target);
        let rpc = &mut self.rpcs[key];
        if rpc.rtt_probe.is_none() {
            rpc.rtt_probe = Some(Probe::Grant(self.now, before));
        }
        let charged = self.charge_rx(peer, grow);
        debug_assert!(charged, "growth was fitted to the budget");
        Some(target)
    }

    /// Issues the grants the simple rule calls for: every incoming message is
    /// granted up to `received + grant_window` bytes.
    pub(crate) fn send_grants(&mut self) {
        let list = core::mem::take(&mut self.grant_list);
        let window = self.config.grant_window as u64;
        for (key, seq) in list {
            if !self.live(key, seq) {
                continue;
            }
            let rpc = &mut self.rpcs[key];
            rpc.in_grant_list = false;
            let Some(m) = rpc.msgin.as_mut() else {
                continue;
            };
            let target = (m.received() as u64 + window).min(m.length() as u64) as u32;
            if target <= m.granted() {
                continue;
            }
            let (port, peer, id) = (rpc.port, rpc.peer, rpc.id);
            let Some(target) = self.fit_grant_to_memory(key, seq, target) else {
                continue;
            };
            let body = Body::Grant(GrantHeader {
                offset: target,
                priority: 0,
            });
            self.send_control(port, peer, id, body);
        }
    }
}
