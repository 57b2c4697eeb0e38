//! Room for deletes: appends are refused before the LMDB map or the disk
//! under it runs out, so the deletes that free space can always commit.
//!
//! # Why
//!
//! LMDB never writes in place: a delete copies every page it touches and
//! records the freed pages in its freelist, which takes new pages too. With
//! the map (or the disk) filled to the last page by appends, the delete
//! that would drain the buffer fails with `MDB_MAP_FULL` / `ENOSPC` and
//! seedgate is stuck until somebody frees space by hand. So appends stop
//! [`reserve_bytes`] short of the end; only deletes, drops and the writer's
//! own bookkeeping use that last stretch.
//!
//! # How
//!
//! Before a group's appends, [`Room::measure`] reads what LMDB already says
//! about itself (no scan): the highest page ever used, the pages the
//! databases hold now, the map size, the data file's length and the space
//! left on its file system. Pages below the high-water mark that no database
//! holds are free (LMDB's freelist) and are reused before the file grows.
//! [`Room::check`] then estimates the pages the appends need and refuses
//! them as [`StoreError::Full`] when they would eat into the reserve.
//!
//! Once the disk is nearly full, the reserve is kept inside `data.mdb`
//! ([`FileReserve`]): the file is allocated at least the reserve past
//! LMDB's high-water mark, so a delete
//! writes into blocks the file already owns even when another process
//! took the disk's last byte. Appends that grow the log past its free
//! pages must leave the reserve in that slack or on the disk; surplus free
//! pages do not count for it.
//!
//! The estimate is deliberately rough (it counts pages freed by the last
//! two commits as free although LMDB hands them out a little later, and it
//! cannot see the freelist's own pages); the reserve absorbs that. When
//! another process fills the disk behind our back, the commit fails anyway:
//! [`disk_full_after`] turns the resulting I/O error into the same
//! backpressure.

use std::cell::Cell;
use std::path::Path;

use super::format::LOG_KEY_LEN;
use super::{FullReason, Store, StoreError};

/// Least reserve: a delete of a large batch rewrites a few dozen pages.
const MIN_RESERVE: u64 = 256 * 1024;

/// Most reserve; even a drop of a whole 16 GiB queue records its freed
/// pages (8 bytes each) in 32 MiB.
const MAX_RESERVE: u64 = 64 * 1024 * 1024;

/// Pages a transaction rewrites besides the entries themselves: the path
/// from the root to the last leaf of `entries`, the `meta` leaf with the
/// sequence keys, the main database and the freelist.
const TXN_OVERHEAD_PAGES: u64 = 8;

/// LMDB's per-node header in a leaf page.
const NODE_HEADER: u64 = 8;

/// LMDB's page header, also in front of an overflow run.
const PAGE_HEADER: u64 = 16;

/// Bytes kept free at the end of the map and of the disk for deletes:
/// 1/256 of the map (a delete of everything records 8 bytes per freed 4 KiB
/// page in the freelist: 1/512), within 256 KiB ..= 64 MiB.
pub(super) fn reserve_bytes(map_size: u64) -> u64 {
    (map_size / 256).clamp(MIN_RESERVE, MAX_RESERVE)
}

/// Bytes an unprivileged writer may still put on the file system of `dir`;
/// `None` when the file system cannot say.
pub(super) fn disk_available(dir: &Path) -> Option<u64> {
    rustix::fs::statvfs(dir).ok().map(|st| available(&st))
}

/// Bytes an unprivileged writer may still put on a file system.
fn available(st: &rustix::fs::StatVfs) -> u64 {
    st.f_bavail.saturating_mul(st.f_frsize)
}

/// Pages LMDB needs to store log values of these lengths: a value larger
/// than half a page goes to its own run of overflow pages, smaller ones
/// share leaf pages (half full after splits, at worst).
pub(super) fn pages_for(value_lens: impl Iterator<Item = usize>, page_size: u64) -> u64 {
    let (mut pages, mut inline) = (TXN_OVERHEAD_PAGES, 0u64);
    for len in value_lens {
        let value = len as u64;
        // Key: the log position.
        let node = NODE_HEADER + LOG_KEY_LEN as u64 + value;
        if node > page_size / 2 {
            pages += (PAGE_HEADER + value).div_ceil(page_size);
        } else {
            inline += node;
        }
    }
    pages + (2 * inline).div_ceil(page_size)
}

/// What LMDB and the file system say about free space, in pages of the
/// environment's size.
#[derive(Debug, Clone, Copy)]
pub(super) struct Room {
    page_size: u64,
    /// Pages the map may still grow by.
    map_unused: u64,
    /// Pages below the high-water mark that no database holds.
    free: u64,
    /// Pages the data file already has beyond the high-water mark (a
    /// failed commit's writes): reused without new disk space.
    file_slack: u64,
    /// Bytes left on the file system; `None` when it cannot say.
    disk: Option<u64>,
    reserve: u64,
}

// === impl Room ===

impl Room {
    /// Reads the numbers as of the last commit (`txn` must not have written
    /// yet); `data` gives the data file's length, `disk` what is left on
    /// the disk (as [`FileReserve::keep`] measured it).
    pub(super) fn measure(
        store: &Store,
        txn: &heed::RoTxn<'_>,
        data: &FileReserve,
        disk: Option<u64>,
    ) -> Result<Room, heed::Error> {
        let info = store.env.info();
        let main = store.env.unnamed_database_stat();
        let page_size = u64::from(main.page_size).max(1);
        let mut held = 2 + db_pages(&main); // and the two meta pages
        for db in [&store.meta, &store.log, &store.legacy] {
            held += db_pages(&db.stat(txn)?);
        }
        let high_water = info.last_page_number as u64 + 1;
        let file_len = match data.len() {
            Some(len) => len,
            None => store.env.real_disk_size()?,
        };
        let file_pages = file_len / page_size;
        Ok(Room {
            page_size,
            map_unused: (store.map_size / page_size).saturating_sub(high_water),
            free: high_water.saturating_sub(held),
            file_slack: file_pages.saturating_sub(high_water),
            disk,
            reserve: store.reserve,
        })
    }

    /// `Ok` when `pages` more fit and leave the reserve, else why not.
    ///
    /// Free pages are reused first, then the file's slack, and only the
    /// rest grows the file; the reserve must remain obtainable afterwards,
    /// from whichever of them is left.
    pub(super) fn check(&self, pages: u64) -> Result<(), StoreError> {
        let wanted = pages + self.reserve.div_ceil(self.page_size);
        if wanted > self.free + self.map_unused {
            return Err(StoreError::Full {
                reason: FullReason::Map,
                detail: format!(
                    "LMDB map is full up to the {} bytes kept for deletes",
                    self.reserve
                ),
            });
        }
        // Appends that fit in free pages need no disk. Those that grow the
        // log past them must leave the reserve in the file's slack or on
        // the disk, whatever else is free: free pages go to the appends
        // first, and those freed lately are not reusable while a reader
        // still sees them (see [`FileReserve`]).
        let from_file = pages.saturating_sub(self.free);
        let new_bytes = if from_file == 0 {
            0
        } else {
            (from_file + self.reserve.div_ceil(self.page_size)).saturating_sub(self.file_slack)
                * self.page_size
        };
        if let Some(disk) = self.disk
            && new_bytes > disk
        {
            return Err(StoreError::Full {
                reason: FullReason::Disk,
                detail: format!(
                    "disk: {disk} bytes left, of which {} are kept for deletes",
                    self.reserve
                ),
            });
        }
        Ok(())
    }
}

/// Below this many reserves of free disk space, the reserve is kept
/// allocated inside `data.mdb` ([`FileReserve`]).
const NEAR_FULL_RESERVES: u64 = 16;

/// The reserve, allocated inside `data.mdb` once the disk is nearly full:
/// the file is kept at least [`reserve_bytes`] longer than what LMDB wrote
/// or is about to write, with its blocks allocated (`fallocate`). LMDB
/// writes past its high-water mark before it grows anything, so deletes
/// land in blocks the file already owns even when another process has
/// taken the disk to the last byte.
///
/// Why: a reserve kept only as free disk space belongs to whoever writes
/// first, and a delete copies pages before it frees any, so with no free
/// page in the file and no byte on the disk it can never commit (a
/// full-disk test caught one delete refused for good). The writer
/// allocates before it measures an append's [`Room`], which counts these
/// pages as the file's slack: an append that would eat into the reserve is
/// refused unless the file (or the disk) holds it.
///
/// Why only near full: blocks allocated ahead are unwritten extents, and
/// commits that write into them cost more (ext4 journals each conversion
/// with the commit's `fdatasync`): the single destination acknowledged
/// about a fifth less with the reserve always allocated (measured). On a
/// disk with [`NEAR_FULL_RESERVES`] reserves free, another process would
/// have to write all of that within one commit to take the reserve.
#[derive(Debug)]
pub(super) struct FileReserve {
    file: Option<std::fs::File>,
    /// The directory whose file system is watched.
    dir: std::path::PathBuf,
    /// Bytes of the file known to be allocated.
    allocated: Cell<u64>,
    reserve: u64,
    /// The map's size: the file never grows past it.
    limit: u64,
    /// Free disk bytes below which the reserve goes into the file.
    near_full: u64,
}

// === impl FileReserve ===

impl FileReserve {
    /// For the data file of `store`; without one (it cannot be opened),
    /// the reserve stays on the disk.
    pub(super) fn open(store: &Store) -> FileReserve {
        let near_full = store.reserve.saturating_mul(NEAR_FULL_RESERVES);
        FileReserve::new(store.env.path(), store.reserve, store.map_size, near_full)
    }

    fn new(dir: &Path, reserve: u64, limit: u64, near_full: u64) -> FileReserve {
        let path = dir.join("data.mdb");
        let file = std::fs::OpenOptions::new().write(true).open(&path);
        if let Err(e) = &file {
            tracing::warn!(path = %path.display(), error = %e, "Could not open the LMDB data file to keep its reserve allocated; deletes rely on free disk space.");
        }
        let allocated = file
            .as_ref()
            .ok()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        FileReserve {
            file: file.ok(),
            dir: dir.to_path_buf(),
            allocated: Cell::new(allocated),
            reserve,
            limit,
            near_full,
        }
    }

    /// The data file's length, from its open descriptor (one `fstat`).
    pub(super) fn len(&self) -> Option<u64> {
        Some(self.file.as_ref()?.metadata().ok()?.len())
    }

    /// Bytes an unprivileged writer may still put on the data file's file
    /// system; by its descriptor, so without a path lookup per commit.
    pub(super) fn disk_left(&self) -> Option<u64> {
        match &self.file {
            Some(file) => rustix::fs::fstatvfs(file).ok().map(|st| available(&st)),
            None => disk_available(&self.dir),
        }
    }

    /// Makes sure the file is allocated `reserve` bytes past `end` (what
    /// LMDB wrote, or is about to write) while the disk is nearly full. It
    /// grows by twice the reserve at a time, so rarely; on a full disk it
    /// takes what it can get and tries again with the next call. Returns
    /// the bytes left on the disk afterwards, for [`Room::measure`].
    pub(super) fn keep(&self, end: u64) -> Option<u64> {
        let disk = self.disk_left();
        let Some(file) = &self.file else { return disk };
        let wanted = (end + self.reserve).min(self.limit);
        let allocated = self.allocated.get();
        if allocated >= wanted || disk.is_none_or(|left| left >= self.near_full) {
            return disk;
        }
        let step = (end + 2 * self.reserve).min(self.limit);
        for target in [step, wanted] {
            match rustix::fs::fallocate(
                file,
                rustix::fs::FallocateFlags::empty(),
                allocated,
                target - allocated,
            ) {
                Ok(()) => {
                    self.allocated.set(target);
                    return self.disk_left();
                }
                Err(rustix::io::Errno::NOSPC) => {}
                Err(e) => {
                    // Not supported here: the reserve stays on the disk.
                    tracing::info!(error = %e, "The file system cannot allocate the LMDB data file ahead; deletes rely on free disk space.");
                    self.allocated.set(u64::MAX);
                    return disk;
                }
            }
        }
        // A failed call may have allocated a part: the length says.
        if let Ok(m) = file.metadata() {
            self.allocated.set(m.len());
        }
        tracing::debug!(
            allocated = self.allocated.get(),
            wanted,
            "No disk space to allocate the LMDB reserve ahead yet."
        );
        self.disk_left()
    }
}

fn db_pages(stat: &heed::DatabaseStat) -> u64 {
    (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64
}

/// Whether a commit that failed with `error` failed because the disk under
/// `dir` is full: `ENOSPC`/`EDQUOT` say so themselves, but LMDB reports a
/// short write (the disk filled up in the middle of a commit) as `EIO`, so
/// any I/O error counts when the file system has less than `reserve` bytes
/// left.
pub(super) fn disk_full_after(error: &heed::Error, dir: &Path, reserve: u64) -> bool {
    match error {
        heed::Error::Io(e) => {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || disk_available(dir).is_some_and(|left| left < reserve)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_scales_with_the_map_within_bounds() {
        assert_eq!(reserve_bytes(1 << 20), MIN_RESERVE);
        assert_eq!(reserve_bytes(4 << 30), 16 << 20);
        assert_eq!(reserve_bytes(1 << 40), MAX_RESERVE);
    }

    #[test]
    fn big_values_take_overflow_pages_small_ones_share_leaves() {
        let base = pages_for(std::iter::empty(), 4096);
        assert_eq!(base, TXN_OVERHEAD_PAGES);
        // 100 KB: 25 overflow pages.
        assert_eq!(pages_for([100_000].into_iter(), 4096) - base, 25);
        // 100 × 200 bytes: ~23 KB of nodes at half fill, 12 pages.
        let small = pages_for(std::iter::repeat_n(200, 100), 4096) - base;
        assert!((10..=13).contains(&small), "{small}");
    }

    #[test]
    fn io_errors_of_a_commit_are_a_full_disk_when_the_disk_is_nearly_full() {
        let dir = std::env::temp_dir();
        let io = |code| heed::Error::Io(std::io::Error::from_raw_os_error(code));
        let (enospc, eio) = (28, 5);
        // ENOSPC says so itself, whatever is left.
        assert!(disk_full_after(&io(enospc), &dir, 0));
        // LMDB's short write is EIO: full only with less than the reserve left.
        assert!(disk_full_after(&io(eio), &dir, u64::MAX));
        assert!(!disk_full_after(&io(eio), &dir, 0));
        // Not an I/O error: never the disk.
        let corrupt = heed::Error::Mdb(heed::MdbError::Corrupted);
        assert!(!disk_full_after(&corrupt, &dir, u64::MAX));
    }

    /// Near full, the reserve is allocated in the file past what LMDB
    /// wrote, in steps, never past the map; on a roomy disk it is not.
    #[test]
    fn the_reserve_is_allocated_in_the_data_file_only_near_full() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.mdb");
        std::fs::write(&data, vec![1u8; 8192]).unwrap();
        let (reserve, limit) = (64 * 4096, 1024 * 4096);
        let len = || std::fs::metadata(&data).unwrap().len();

        let left = FileReserve::new(dir.path(), reserve, limit, 0).keep(8192);
        assert!(left.is_some_and(|l| l > 0), "the disk left: {left:?}");
        assert_eq!(len(), 8192, "a roomy disk keeps the reserve itself");

        let near_full = FileReserve::new(dir.path(), reserve, limit, u64::MAX);
        near_full.keep(8192);
        assert_eq!(len(), 8192 + 2 * reserve, "grown by two reserves at once");
        let meta = std::fs::metadata(&data).unwrap();
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "allocated, not a hole: {meta:?}"
        );
        // LMDB wrote (or is about to write) one reserve more: still enough.
        near_full.keep(8192 + reserve);
        assert_eq!(len(), 8192 + 2 * reserve);
        near_full.keep(8192 + reserve + 4096);
        assert_eq!(len(), 8192 + 3 * reserve + 4096);
        // Never past the map.
        near_full.keep(limit - 4096);
        assert_eq!(len(), limit);
    }

    fn room(free: u64, map_unused: u64, file_slack: u64, disk: Option<u64>) -> Room {
        Room {
            page_size: 4096,
            map_unused,
            free,
            file_slack,
            disk,
            reserve: 40 * 4096,
        }
    }

    fn refused(r: Result<(), StoreError>) -> Option<FullReason> {
        match r {
            Err(StoreError::Full { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn appends_stop_short_of_the_reserve() {
        use FullReason::{Disk, Map};
        let disk = Some(100 * 4096);
        // (free, map unused, file slack, disk, pages wanted, refused as);
        // the reserve is 40 pages.
        let cases = [
            // The map: 100 pages left.
            (0, 100, 0, None, 60, None),
            (0, 100, 0, None, 61, Some(Map)),
            // Free pages below the high-water mark count; with the map at
            // its end, free pages minus the reserve.
            (50, 100, 0, None, 110, None),
            (50, 100, 0, None, 111, Some(Map)),
            (80, 0, 0, None, 40, None),
            (80, 0, 0, None, 41, Some(Map)),
            // The disk: 100 pages left; slack in the file needs none.
            (0, 1000, 0, disk, 60, None),
            (0, 1000, 0, disk, 61, Some(Disk)),
            (0, 1000, 10, disk, 70, None),
            (0, 1000, 10, disk, 71, Some(Disk)),
            // What fits in free pages needs no disk, even a full one.
            (80, 1000, 0, Some(0), 80, None),
            // Beyond them, the reserve must stay in the file's slack or on
            // the disk: surplus free pages do not stand for it.
            (80, 1000, 0, Some(0), 81, Some(Disk)),
            (80, 1000, 41, Some(0), 81, None),
            (80, 1000, 40, Some(4096), 81, None),
            (0, 1000, 40, Some(0), 1, Some(Disk)),
        ];
        for (free, map_unused, file_slack, disk, pages, want) in cases {
            let r = room(free, map_unused, file_slack, disk);
            assert_eq!(refused(r.check(pages)), want, "{r:?} + {pages} pages");
        }
    }
}
