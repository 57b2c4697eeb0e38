//! Giving a value's mapped pages back once it is copied out.
//!
//! Why: an LMDB read is a view into a memory map of `data.mdb`, and a page
//! read once stays mapped into the process, counted in its RSS, until the
//! kernel reclaims it. A store that reads a backlog after an outage, or a
//! tail sampling window, of some hundred MiB would show that much resident
//! memory long after the entries are gone, and the file pages touched over
//! time (LMDB moves entries around the file as it reuses pages) would add
//! up to the whole file. Every read copies or decodes the payload before
//! the read transaction ends, so the pages of a large value are not needed
//! afterwards: they are unmapped with `MADV_DONTNEED`. The kernel's page
//! cache keeps them, so reading the same value again costs a page fault,
//! not disk I/O. B-tree pages (keys, small values) stay mapped.
//!
//! Not every read releases. An exporter that keeps up reads what was just
//! written, LMDB reuses the same few freed pages for the next entries, and
//! their mappings stay valid; unmapping them would cost a `madvise`, a TLB
//! flush and page faults per entry (5-8% of the plain pipeline's
//! throughput, measured) for no memory. So the export path (`read_batch`)
//! releases only while its queue holds a backlog of more than
//! [`BACKLOG_BYTES`] (after an outage; span metrics' deltas between
//! flushes; the tail sampling window), and the writer's deletes only when
//! one commit deletes more than that, or a block that lived half a second
//! or more (a thousand shoots' loops read every block a second after it
//! was written): what they touch then was written long ago and spreads
//! over the file. A part shares its block's first and
//! last pages with its neighbours, so a read gives back only the pages
//! inside it, unless it is its block's only part. Reads of data that lingers
//! by design (the tail sampling decider's) or is read once (resuming, a
//! hand-over, a bisect) always release.
//!
//! What no single read gives back is released as a whole: every
//! [`RELEASE_ALL_EVERY`], after a commit or on its idle tick, the writer
//! drops the process's mappings of the whole map ([`Map::release_all`]).
//! A thousand shoot clients each read a second's batch of small entries
//! spread over the log, too small to release one by one (a page holds
//! entries of other shoots, still to be read). Under load they read their
//! working set again within seconds (about 280 MiB of `data.mdb` with
//! 1,000 to 5,000 shoots at 450-570k records/s), so this does not lower
//! the peak; it gives those pages back once the load stops, instead of
//! keeping them in the process's RSS until the kernel wants them. What it
//! costs is one page fault for each page a reader still needs afterwards.

use std::path::Path;
use std::sync::OnceLock;

/// Above this many bytes in a queue its reads and deletes give their
/// pages back.
pub(super) const BACKLOG_BYTES: u64 = 16 * 1024 * 1024;

/// How often the writer gives back every mapped page of the map.
pub(super) const RELEASE_ALL_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The OS page size, which is LMDB's page size.
fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(rustix::param::page_size)
}

/// Where the map of `data.mdb` lies in this process. Only pages inside it
/// are ever unmapped: a value LMDB hands out inside a write transaction
/// may live in a page it copied to the heap (one written in that same
/// transaction), and `MADV_DONTNEED` there would zero live memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Map {
    start: usize,
    end: usize,
}

impl Map {
    /// The mapping of `data_file` in `/proc/self/maps`; `None` when there
    /// is none (not Linux), and then nothing is released.
    pub(super) fn find(data_file: &Path) -> Option<Map> {
        let data_file = data_file.canonicalize().ok()?;
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            // start-end perms offset dev inode path
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let path = fields.nth(4)?.trim_start();
            if Path::new(path) != data_file {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Map {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
            })
        })
    }

    /// Unmaps the pages of `value`, a whole log value that was read and is
    /// no longer needed, when it fills at least one page (see
    /// [`Map::pages_of`]).
    pub(super) fn release(&self, value: &[u8]) {
        if let Some(pages) = self.pages_of(value) {
            unmap(pages);
        }
    }

    /// Unmaps the whole pages inside `payload`, one part of a block that
    /// was read and is no longer needed. Only those: the pages at its
    /// edges hold the block's other parts (or its directory), which other
    /// readers are about to read.
    pub(super) fn release_inside(&self, payload: &[u8]) {
        let page = page_size();
        let addr = payload.as_ptr() as usize;
        let pages = (
            addr.next_multiple_of(page),
            (addr + payload.len()) / page * page,
        );
        if pages.0 < pages.1 && self.start <= pages.0 && pages.1 <= self.end {
            unmap(pages);
        }
    }

    /// Unmaps every page of the map this process has mapped (see the
    /// module doc). Readers inside a transaction are unaffected but for a
    /// page fault: see [`unmap`].
    pub(super) fn release_all(&self) {
        unmap((self.start, self.end));
    }

    /// The pages `[start, end)` under `value`, if it fills at least one
    /// page and lies in the map. A value that large lives in LMDB overflow
    /// pages of its own (anything over about half a page does), so the
    /// pages from its first byte to its last belong to it alone.
    fn pages_of(&self, value: &[u8]) -> Option<(usize, usize)> {
        let page = page_size();
        let addr = value.as_ptr() as usize;
        let pages = (
            addr / page * page,
            (addr + value.len()).next_multiple_of(page),
        );
        (value.len() >= page && self.start <= pages.0 && pages.1 <= self.end).then_some(pages)
    }
}

/// Pages of the map that held values now deleted, collected while the
/// delete runs (LMDB reads each large value's first page to free it) and
/// unmapped after it, adjacent ones in one call.
#[derive(Debug)]
pub(super) struct Released {
    map: Map,
    pages: Vec<(usize, usize)>,
}

impl Released {
    pub(super) fn new(map: Map) -> Self {
        Self {
            map,
            pages: Vec::new(),
        }
    }

    /// Notes the pages of `value`, a whole log value (see [`Map::release`]).
    pub(super) fn note(&mut self, value: &[u8]) {
        if let Some(pages) = self.map.pages_of(value) {
            self.pages.push(pages);
        }
    }

    /// Unmaps every noted page.
    pub(super) fn unmap(mut self) {
        self.pages.sort_unstable();
        let mut run: Option<(usize, usize)> = None;
        for (start, end) in self.pages {
            run = match run {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some(done) => {
                    unmap(done);
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some(done) = run {
            unmap(done);
        }
    }
}

fn unmap((start, end): (usize, usize)) {
    #[cfg(target_os = "linux")]
    // SAFETY: `MADV_DONTNEED` on a shared, read-only file mapping (LMDB
    // maps `data.mdb` `PROT_READ`, `MAP_SHARED`, since the store never sets
    // `MDB_WRITEMAP`) only drops page table entries: the next access faults
    // the same bytes back in from the page cache or the file, so no
    // reference into the map ever sees different bytes. The range is whole
    // pages inside the map ([`Map::pages_of`] checks it, or it is the map
    // itself), never heap memory. A failure only leaves the pages mapped.
    #[allow(unsafe_code)]
    unsafe {
        if let Err(e) = rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            end - start,
            rustix::mm::Advice::LinuxDontNeed,
        ) {
            tracing::debug!(error = %e, "madvise(MADV_DONTNEED) on LMDB pages failed; they stay mapped");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, end);
}
