//! A small ordered set for the schedulers' rank orders (the grant
//! scheduler's incoming messages, the pacer's SRPT queue): a vector kept
//! sorted worst first, so the best entry is the last.
//!
//! The schedulers re-rank a message on every packet (its bytes left
//! change), and the message that moves is nearly always at or near the
//! best end, where it stays: [`RankList::replace`] finds it by binary
//! search and slides it over the few entries it passes, in place. An
//! ordered tree would remove and re-insert a node for each packet. Joins
//! and leaves shift the entries on the better side, which are few where
//! the schedulers churn (new short messages, completing best ones).

/// Distinct values of `T` in order, the greatest (worst rank) first and
/// the least (best) last; see the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct RankList<T>(Vec<T>);

impl<T> Default for RankList<T> {
    fn default() -> Self {
        RankList(Vec::new())
    }
}

impl<T: Ord + Copy> RankList<T> {
    /// Index of `x`, or where it would go.
    #[inline]
    fn position(&self, x: &T) -> Result<usize, usize> {
        // The best entry moves most: look there first.
        match self.0.last() {
            Some(last) if last == x => Ok(self.0.len() - 1),
            _ => self.0.binary_search_by(|e| x.cmp(e)),
        }
    }

    /// Adds `x` (nothing if it is there already).
    #[inline]
    pub(crate) fn insert(&mut self, x: T) {
        if let Err(i) = self.position(&x) {
            self.0.insert(i, x);
        }
    }

    /// Removes `x` if it is there.
    #[inline]
    pub(crate) fn remove(&mut self, x: &T) {
        if let Ok(i) = self.position(x) {
            self.0.remove(i);
        }
    }

    /// Replaces `old` with `new` (as `remove(old)` then `insert(new)`),
    /// moving the entry over its neighbours in place.
    #[inline]
    pub(crate) fn replace(&mut self, old: &T, new: T) {
        let Ok(mut i) = self.position(old) else {
            self.insert(new);
            return;
        };
        let v = &mut self.0;
        if new < *old {
            // Better: towards the end.
            while i + 1 < v.len() && v[i + 1] > new {
                v[i] = v[i + 1];
                i += 1;
            }
            if i + 1 < v.len() && v[i + 1] == new {
                // `new` was there already: `old` just leaves.
                v.remove(i);
                return;
            }
        } else if new > *old {
            while i > 0 && v[i - 1] < new {
                v[i] = v[i - 1];
                i -= 1;
            }
            if i > 0 && v[i - 1] == new {
                v.remove(i);
                return;
            }
        }
        v[i] = new;
    }

    /// Applies a move from `old` to `new` (`None`: absent).
    #[inline]
    pub(crate) fn apply(&mut self, old: Option<&T>, new: Option<T>) {
        match (old, new) {
            (Some(o), Some(n)) => self.replace(o, n),
            (Some(o), None) => self.remove(o),
            (None, Some(n)) => self.insert(n),
            (None, None) => {}
        }
    }

    /// The least (best) entry.
    #[inline]
    pub(crate) fn first(&self) -> Option<&T> {
        self.0.last()
    }

    /// Entries best first.
    #[inline]
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + '_ {
        self.0.iter().rev()
    }

    /// Number of entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A model check: inserts, removals (of present and absent values)
    /// and replacements (moving either way, onto present values, from
    /// absent ones) in scrambled order keep exactly an ordered set's
    /// contents and order.
    #[test]
    fn rank_list__matches_an_ordered_set_under_any_order_of_changes() {
        let mut l = RankList::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50_000 {
            let r = next();
            let a = (r % 97) as u32;
            // Replacements mostly move a value by a little, as a message's
            // rank does per packet.
            let b = if r & (1 << 20) == 0 {
                a.saturating_sub((r >> 24) as u32 % 4)
            } else {
                (r >> 32) as u32 % 97
            };
            let (old, new) = match (r >> 40) % 4 {
                0 => (None, Some(a)),
                1 => (Some(a), None),
                _ => (Some(a), Some(b)),
            };
            l.apply(old.as_ref(), new);
            if let Some(o) = old {
                model.remove(&o);
            }
            if let Some(n) = new {
                model.insert(n);
            }
            assert_eq!(l.first(), model.first());
            assert_eq!(l.len(), model.len());
            assert_eq!(l.is_empty(), model.is_empty());
            assert!(l.iter().eq(model.iter()), "same entries, same order");
        }
    }

    #[test]
    fn replace__moves_an_entry_both_ways() {
        let mut l = RankList::default();
        for v in [10, 20, 30, 40] {
            l.insert(v);
        }
        l.replace(&40, 15);
        assert!(l.iter().copied().eq([10, 15, 20, 30]));
        l.replace(&10, 35);
        assert!(l.iter().copied().eq([15, 20, 30, 35]));
        // Unchanged order: the value changes in place.
        l.replace(&15, 12);
        assert!(l.iter().copied().eq([12, 20, 30, 35]));
        assert_eq!(l.first(), Some(&12));
    }
}
