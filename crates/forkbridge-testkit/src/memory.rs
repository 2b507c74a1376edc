//! Mappings and resident memory of this process, to see leaks.

/// Number of shared mappings of this process.
///
/// forkbridge's rings, buffers, events and memfds are all `MAP_SHARED`,
/// so a leaked one shows here, while private anonymous mappings come and
/// go with the allocator (and a sanitizer adds its own by the hundred).
pub fn shared_mappings() -> usize {
    maps(|perms| perms.ends_with('s'))
}

/// Number of mappings of this process, private ones included: a coarser
/// count than [`shared_mappings`], for a check that wants a leaked thread
/// stack or heap arena to show too (give it some slack for the allocator).
pub fn mappings() -> usize {
    maps(|_| true)
}

/// Lines of `/proc/self/maps` whose permissions (`rw-s`, `r-xp`) match.
fn maps(keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |text| {
        text.lines()
            .filter(|line| line.split_whitespace().nth(1).is_some_and(&keep))
            .count()
    })
}

/// Resident memory of this process in KiB (`VmRSS`), or 0 if unknown:
/// a sender that buffers without a bound shows here.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_mapping_is_counted_until_unmapped() {
        // Retried, as other tests map and unmap meanwhile.
        let held = (0..50).any(|_| {
            let before = shared_mappings();
            let page = crate::SharedPage::new();
            let during = shared_mappings();
            drop(page);
            during == before + 1 && shared_mappings() == before
        });
        assert!(held);
        assert!(mappings() >= shared_mappings());
        assert!(rss_kib() > 0);
    }
}
