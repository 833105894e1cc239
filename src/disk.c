/* The data cache on disk: entries, each one file, DIR/xx/<hash>[.<block>]
 * where <hash> is the XXH3-128 of the object's identity in hex and xx its
 * first two digits: a header (what the bytes are, and checksums of itself
 * and of them) then the bytes. An entry is written under a temporary name
 * in DIR/tmp and renamed in, so a reader sees a whole entry or none. Every
 * file is reached through the descriptor of DIR, a folder of this user's
 * that nobody else can change (cachedir.h); a subfolder is checked once,
 * and an entry that is not a file this user wrote is never read. Which
 * entries are kept is the index's to decide (disk_index.h). */
#include "disk.h"
#include "cachedir.h"
#include "disk_index.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <xxhash.h>

#define MAGIC "avalafs\x01"
#define HEAD_MAX 4096 /* header and its strings */
#define FREE_SHARE 20 /* keep 1/20 of the file system free */
#define BATCH_MAX 32 /* entries admitted in one transaction */

/* The fixed part of an entry's header; the identity, ETag and listing time
 * follow it, then the bytes. Native byte order: the cache is this
 * machine's. */
struct head {
	char magic[8];
	uint32_t head_len; /* this struct and its strings */
	uint16_t id_len, etag_len, listed_len;
	uint16_t pad;
	int64_t unit;
	int64_t total;
	int64_t len; /* bytes after the header */
	uint64_t sum; /* XXH3-64 of the bytes */
	uint64_t head_sum; /* XXH3-64 of the header with this field 0 */
};

struct disk {
	int dir_fd; /* DIR */
	int tmp_fd; /* DIR/tmp */
	char *dir; /* its path, for messages and the index */
	int64_t cap;
	int64_t block; /* the file system's allocation unit */
	int64_t (*others)(void *ctx);
	void *others_ctx;
	struct disk_index *index;
	uint8_t sub_ok[256]; /* atomic: DIR/xx was checked */
	uint64_t tmp_seq; /* atomic */
	pthread_mutex_t lock; /* the counters below */
	uint64_t hits, misses, damaged, puts, refused, write_errors;
	int write_errno; /* the last failure to write an entry, said once */
};

/* ---- names ---- */

static void entry_name(const char *id, int64_t unit, char *name, size_t cap)
{
	XXH128_hash_t h = XXH3_128bits(id, strlen(id));

	if (unit == DISK_WHOLE)
		snprintf(name, cap, "%016" PRIx64 "%016" PRIx64, h.high64,
			 h.low64);
	else if (unit >= DISK_PIECES)
		snprintf(name, cap, "%016" PRIx64 "%016" PRIx64 ".p%" PRId64,
			 h.high64, h.low64, unit - DISK_PIECES);
	else
		snprintf(name, cap, "%016" PRIx64 "%016" PRIx64 ".%" PRId64,
			 h.high64, h.low64, unit);
}

/* The entry's name below DIR: "xx/<name>". */
static void entry_rel(const char *name, char *rel, size_t cap)
{
	snprintf(rel, cap, "%.2s/%.*s", name, DISK_NAME_MAX - 1, name);
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c - 'a' + 10;
}

/* Check DIR/xx of entry @name once (made when @make): after that, names
 * below it are opened by path from DIR, which nobody else can change. */
static int sub_ready(struct disk *d, const char *name, bool make)
{
	unsigned i = (unsigned)(hex_digit(name[0]) << 4 | hex_digit(name[1]));
	char sub[3] = { name[0], name[1], '\0' };
	int fd;

	if (__atomic_load_n(&d->sub_ok[i & 0xff], __ATOMIC_ACQUIRE))
		return 0;
	fd = cachedir_subdir(d->dir_fd, sub, make);
	if (fd < 0)
		return fd;
	close(fd);
	__atomic_store_n(&d->sub_ok[i & 0xff], 1, __ATOMIC_RELEASE);
	return 0;
}

/* Remove entry @name's file (the index evicted it). */
static void entry_remove(void *ctx, const char *name)
{
	struct disk *d = ctx;
	char rel[DISK_NAME_MAX + 4];

	/* through its folder, checked: never through a planted link */
	if (sub_ready(d, name, false))
		return;
	entry_rel(name, rel, sizeof(rel));
	if (unlinkat(d->dir_fd, rel, 0) && errno != ENOENT)
		log_debug("data cache: cannot remove %s/%s: %s", d->dir, rel,
			  strerror(errno));
}

#define INDEX_LOG_MAX (512 << 10) /* its journal_size_limit */

/* What the index takes on disk: its file, its shared memory and its
 * write-ahead log, counted at the size it grows to between checkpoints. */
static int64_t index_bytes(struct disk *d)
{
	static const char *const names[] = { "index.db", "index.db-shm",
					     "index.db-wal" };
	int64_t n = 0, b;
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(*names); i++) {
		b = fstatat(d->dir_fd, names[i], &st, AT_SYMLINK_NOFOLLOW)
			    ? 0
			    : (int64_t)st.st_blocks * 512;
		n += i == 2 && b < INDEX_LOG_MAX ? INDEX_LOG_MAX : b;
	}
	return n;
}

/* What an entry of @len bytes for @put takes on disk: its header, and the
 * file system's blocks it fills, so that the cap bounds the folder, not
 * only the bytes in it. */
static int64_t footprint(const struct disk *d, const struct disk_put *put,
			 int64_t len)
{
	int64_t n = len + (int64_t)sizeof(struct head) + strlen(put->id) +
		    strlen(put->v->etag) + strlen(put->v->listed);

	return (n + d->block - 1) / d->block * d->block;
}

/* The room the cache has now: its cap less what the listings and the
 * index beside it take, and what leaves 1/20 of the file system free. */
static void room_now(struct disk *d, struct disk_room *room)
{
	struct statvfs sv;

	room->cap = d->cap;
	room->others =
		(d->others ? d->others(d->others_ctx) : 0) + index_bytes(d);
	room->fs_free = room->fs_reserve = -1;
	if (fstatvfs(d->dir_fd, &sv) == 0) {
		room->fs_free = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
		room->fs_reserve = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize /
				   FREE_SHARE;
	}
}

/* ---- entries ---- */

static uint64_t head_sum(struct head *h, const char *strings)
{
	uint64_t saved = h->head_sum, sum;
	XXH3_state_t *st = XXH3_createState();

	h->head_sum = 0;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, sizeof(*h));
	XXH3_64bits_update(st, strings,
			   (size_t)h->id_len + h->etag_len + h->listed_len);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	h->head_sum = saved;
	return sum;
}

/* Whether the version an entry has (@got) may serve a reader who expects
 * @want. */
static bool version_fits(const struct disk_version *want,
			 const struct disk_version *got)
{
	if (strcmp(want->listed, got->listed) != 0)
		return false;
	if (want->total >= 0 && want->total != got->total)
		return false;
	return !want->etag[0] || strcmp(want->etag, got->etag) == 0;
}

/* Where an entry's bytes go: @iov (@n pieces) when the entry is exactly
 * as long as they are together, else a new buffer in *@bytes (with @iov
 * NULL). */
struct sink {
	const struct iovec *iov;
	int n;
	void **bytes;
};

static size_t sink_len(const struct sink *k)
{
	size_t len = 0;
	int i;

	for (i = 0; i < k->n; i++)
		len += k->iov[i].iov_len;
	return len;
}

/* Read the bytes of the entry open at @fd, whose header @h says where they
 * are, into @k, and check them. Returns their length, -EMSGSIZE when @k's
 * pieces do not hold exactly them (nothing read), -EBADMSG when they fail
 * their checksum, or -ENOMEM or -EIO. */
static ssize_t body_read(int fd, const struct head *h, const struct sink *k)
{
	XXH3_state_t *st;
	uint64_t sum;
	ssize_t n;
	int i;

	if (!k->iov) {
		void *buf = malloc(h->len ? h->len : 1);

		if (!buf)
			return -ENOMEM;
		n = pread(fd, buf, h->len, h->head_len);
		if (n != h->len || XXH3_64bits(buf, h->len) != h->sum) {
			free(buf);
			return n < 0 ? -EIO : -EBADMSG;
		}
		*k->bytes = buf;
		return n;
	}
	if (sink_len(k) != (size_t)h->len)
		return -EMSGSIZE;
	n = preadv(fd, k->iov, k->n, h->head_len);
	if (n != h->len)
		return n < 0 ? -EIO : -EBADMSG;
	st = XXH3_createState();
	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (i = 0; i < k->n; i++)
		XXH3_64bits_update(st, k->iov[i].iov_base, k->iov[i].iov_len);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return sum == h->sum ? n : -EBADMSG;
}

/* Read and check the entry open at @fd into @k. Returns its length,
 * -ESTALE for another version, -EBADMSG for a damaged entry, or
 * body_read()'s errors. */
static ssize_t entry_read(int fd, const char *id, int64_t unit,
			  const struct disk_version *want,
			  struct disk_version *got, const struct sink *k)
{
	char raw[HEAD_MAX];
	struct head h;
	struct stat st;
	const char *s;
	ssize_t n;
	size_t id_len = strlen(id);

	if (fstat(fd, &st))
		return -errno;
	n = pread(fd, raw, sizeof(raw), 0);
	if (n < (ssize_t)sizeof(h))
		return -EBADMSG;
	memcpy(&h, raw, sizeof(h));
	s = raw + sizeof(h);
	if (memcmp(h.magic, MAGIC, sizeof(h.magic)) != 0 ||
	    h.head_len > (size_t)n ||
	    h.head_len !=
		    sizeof(h) + (size_t)h.id_len + h.etag_len + h.listed_len ||
	    h.head_sum != head_sum(&h, s) || h.len < 0 ||
	    h.len > (unit == DISK_WHOLE	   ? DISK_WHOLE_MAX
		     : unit >= DISK_PIECES ? DISK_PIECE
					   : DISK_BLOCK) ||
	    st.st_size != (off_t)h.head_len + h.len)
		return -EBADMSG;
	/* another identity with the same hash, or another block */
	if (h.id_len != id_len || memcmp(s, id, id_len) != 0 || h.unit != unit)
		return -ESTALE;
	if (h.etag_len >= sizeof(got->etag) ||
	    h.listed_len >= sizeof(got->listed))
		return -EBADMSG;
	got->total = h.total;
	memcpy(got->etag, s + h.id_len, h.etag_len);
	got->etag[h.etag_len] = '\0';
	memcpy(got->listed, s + h.id_len + h.etag_len, h.listed_len);
	got->listed[h.listed_len] = '\0';
	if (!version_fits(want, got))
		return -ESTALE;
	return body_read(fd, &h, k);
}

static ssize_t entry_get(struct disk *d, const char *id, int64_t unit,
			 const struct disk_version *want,
			 struct disk_version *got, const struct sink *k)
{
	char name[DISK_NAME_MAX], rel[DISK_NAME_MAX + 4];
	ssize_t n;
	int fd;

	entry_name(id, unit, name, sizeof(name));
	entry_rel(name, rel, sizeof(rel));
	fd = sub_ready(d, name, false);
	if (!fd)
		fd = cachedir_open_file(d->dir_fd, rel, O_RDONLY | O_NOATIME);
	if (fd < 0) {
		pthread_mutex_lock(&d->lock);
		d->misses++;
		pthread_mutex_unlock(&d->lock);
		return -ENOENT;
	}
	n = entry_read(fd, id, unit, want, got, k);
	close(fd);
	if (n == -ENOMEM || n == -EIO || n == -EMSGSIZE)
		return n; /* the machine's trouble or the caller's: the entry
			   * stays */
	if (n < 0) {
		if (n == -EBADMSG)
			log_err("data cache: %s/%s is damaged, removed", d->dir,
				rel);
		else
			log_debug("data cache: %s/%s is stale, removed", d->dir,
				  rel);
		unlinkat(d->dir_fd, rel, 0);
		pthread_mutex_lock(&d->lock);
		d->misses++;
		d->damaged += n == -EBADMSG;
		pthread_mutex_unlock(&d->lock);
		/* rare: the index forgets it at once */
		disk_index_forget(d->index, name);
		return -ENOENT;
	}
	pthread_mutex_lock(&d->lock);
	d->hits++;
	pthread_mutex_unlock(&d->lock);
	disk_index_hit(d->index, name);
	return n;
}

ssize_t disk_get(struct disk *d, const char *id, int64_t unit,
		 const struct disk_version *want, struct disk_version *got,
		 void **bytes)
{
	struct sink k = { .bytes = bytes };

	*bytes = NULL;
	return entry_get(d, id, unit, want, got, &k);
}

ssize_t disk_get_iov(struct disk *d, const char *id, int64_t unit,
		     const struct disk_version *want, struct disk_version *got,
		     const struct iovec *iov, int n)
{
	struct sink k = { .iov = iov, .n = n };

	return entry_get(d, id, unit, want, got, &k);
}

/* Write an entry to a new file in DIR/tmp; its name in @tmp. */
static int entry_write(struct disk *d, const char *id, int64_t unit,
		       const struct disk_version *v, const struct iovec *iov,
		       int n, char *tmp, size_t tmp_cap)
{
	struct iovec all[1 + 64];
	char raw[HEAD_MAX];
	struct head h = { 0 };
	XXH3_state_t *st;
	size_t len = 0, strings;
	ssize_t done;
	int i, fd, err = 0;

	if (n > 64)
		return -EINVAL;
	memcpy(h.magic, MAGIC, sizeof(h.magic));
	h.id_len = strlen(id);
	h.etag_len = strlen(v->etag);
	h.listed_len = strlen(v->listed);
	strings = (size_t)h.id_len + h.etag_len + h.listed_len;
	if (sizeof(h) + strings > sizeof(raw))
		return -ENAMETOOLONG;
	h.head_len = sizeof(h) + strings;
	h.unit = unit;
	h.total = v->total;
	st = XXH3_createState();
	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (i = 0; i < n; i++) {
		XXH3_64bits_update(st, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	h.sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	h.len = len;
	memcpy(raw + sizeof(h), id, h.id_len);
	memcpy(raw + sizeof(h) + h.id_len, v->etag, h.etag_len);
	memcpy(raw + sizeof(h) + h.id_len + h.etag_len, v->listed,
	       h.listed_len);
	h.head_sum = head_sum(&h, raw + sizeof(h));
	memcpy(raw, &h, sizeof(h));

	snprintf(tmp, tmp_cap, "%ld.%" PRIu64, (long)getpid(),
		 __atomic_fetch_add(&d->tmp_seq, 1, __ATOMIC_RELAXED));
	fd = cachedir_open_file(d->tmp_fd, tmp, O_WRONLY | O_CREAT | O_EXCL);
	if (fd < 0)
		return fd;
	all[0].iov_base = raw;
	all[0].iov_len = h.head_len;
	memcpy(all + 1, iov, n * sizeof(*iov));
	done = pwritev(fd, all, n + 1, 0);
	if (done < 0)
		err = -errno;
	else if ((size_t)done != h.head_len + len)
		err = -ENOSPC;
	if (close(fd) && !err)
		err = -errno;
	if (err)
		unlinkat(d->tmp_fd, tmp, 0);
	return err;
}

/* Rename the entry written as @tmp into its place, checking its folder
 * first; whatever is in the way and is not an entry is set aside. */
static int entry_rename(struct disk *d, const char *name, const char *tmp)
{
	char rel[DISK_NAME_MAX + 4];
	int err = sub_ready(d, name, true), fd;

	entry_rel(name, rel, sizeof(rel));
	if (!err && renameat(d->tmp_fd, tmp, d->dir_fd, rel)) {
		err = -errno;
		if (err == -EISDIR || err == -ENOTEMPTY || err == -EEXIST) {
			/* a folder where the entry goes */
			fd = cachedir_open_file(d->dir_fd, rel, O_RDONLY);
			if (fd >= 0)
				close(fd);
			err = renameat(d->tmp_fd, tmp, d->dir_fd, rel) ? -errno
								       : 0;
		}
	}
	if (err)
		unlinkat(d->tmp_fd, tmp, 0);
	return err;
}

/* Say once, in the log, that entries cannot be written, and why; a full
 * disk is no failure (the cache holds fewer entries). */
static void write_failed(struct disk *d, int err)
{
	bool say;

	pthread_mutex_lock(&d->lock);
	d->write_errors++;
	say = d->write_errno != err;
	d->write_errno = err;
	pthread_mutex_unlock(&d->lock);
	if (say && err == -ENOSPC)
		log_warn("data cache in %s: the disk is full, fewer entries "
			 "are kept",
			 d->dir);
	else if (say)
		log_err("data cache in %s cannot write entries (%s): files "
			"are read without being kept",
			d->dir, strerror(-err));
}

/* disk_put_many() for at most BATCH_MAX entries. */
static void put_batch(struct disk *d, struct disk_put *puts, int n)
{
	char names[BATCH_MAX][DISK_NAME_MAX], tmp[64];
	struct disk_offer offers[BATCH_MAX];
	bool lost[BATCH_MAX], gone[BATCH_MAX];
	struct disk_room room;
	int i, k, err;

	for (i = 0; i < n; i++) {
		offers[i].size = 0;
		for (k = 0; k < puts[i].n; k++)
			offers[i].size += puts[i].iov[k].iov_len;
		offers[i].size = footprint(d, &puts[i], offers[i].size);
		entry_name(puts[i].id, puts[i].unit, names[i],
			   sizeof(names[i]));
		offers[i].name = names[i];
		offers[i].block = puts[i].unit != DISK_WHOLE;
		lost[i] = false;
	}
	/* what comes in, decided in one transaction */
	room_now(d, &room);
	err = disk_index_admit(d->index, offers, n, &room, time(NULL),
			       entry_remove, d);
	for (i = 0; i < n; i++)
		puts[i].err = err ? err : offers[i].in ? 0 : -ENOSPC;

	/* then written, each under a temporary name renamed in */
	for (i = 0; i < n; i++) {
		if (puts[i].err)
			continue;
		puts[i].err = entry_write(d, puts[i].id, puts[i].unit,
					  puts[i].v, puts[i].iov, puts[i].n,
					  tmp, sizeof(tmp));
		if (!puts[i].err)
			puts[i].err = entry_rename(d, names[i], tmp);
		if (puts[i].err) {
			write_failed(d, puts[i].err);
			lost[i] = true;
		}
	}

	/* what could not be written is not counted, and what was evicted
	 * while it was written (by a later entry of the batch, or another
	 * mount) goes: the index never counts less than the disk holds */
	disk_index_settle(d->index, offers, lost, gone, n);
	for (i = 0; i < n; i++) {
		if (gone[i]) {
			entry_remove(d, names[i]);
			puts[i].err = -ENOSPC;
		}
	}
	pthread_mutex_lock(&d->lock);
	for (i = 0; i < n; i++) {
		d->puts += puts[i].err == 0;
		d->refused += puts[i].err != 0;
		if (puts[i].err == 0)
			d->write_errno = 0;
	}
	pthread_mutex_unlock(&d->lock);
}

void disk_put_many(struct disk *d, struct disk_put *puts, int n)
{
	int i;

	for (i = 0; i < n; i += BATCH_MAX)
		put_batch(d, puts + i, n - i < BATCH_MAX ? n - i : BATCH_MAX);
}

int disk_put(struct disk *d, const char *id, int64_t unit,
	     const struct disk_version *v, const struct iovec *iov, int n)
{
	struct disk_put p = { id, unit, v, iov, n, 0 };

	disk_put_many(d, &p, 1);
	return p.err;
}

void disk_drop(struct disk *d, const char *id)
{
	char name[DISK_NAME_MAX];

	entry_name(id, DISK_WHOLE, name, sizeof(name));
	/* the whole entry and every block: names that start with the hash */
	disk_index_drop(d->index, name, entry_remove, d);
	/* an entry the index did not know of (its row was lost) */
	entry_remove(d, name);
}

void disk_drop_pieces(struct disk *d, const char *id, int64_t unit)
{
	int64_t first = unit << (DISK_BLOCK_SHIFT - DISK_PIECE_SHIFT), k;
	char name[DISK_NAME_MAX], rel[DISK_NAME_MAX + 4];

	for (k = first; k < first + (DISK_BLOCK >> DISK_PIECE_SHIFT); k++) {
		entry_name(id, DISK_PIECES + k, name, sizeof(name));
		if (sub_ready(d, name, false))
			return;
		entry_rel(name, rel, sizeof(rel));
		if (unlinkat(d->dir_fd, rel, 0) == 0)
			disk_index_forget(d->index, name);
	}
}

int64_t disk_give_back(struct disk *d)
{
	struct disk_room room;

	room_now(d, &room);
	return disk_index_shrink(d->index, &room, entry_remove, d);
}

void disk_get_stats(struct disk *d, struct disk_stats *st)
{
	struct disk_room room;

	memset(st, 0, sizeof(*st));
	st->used = disk_index_used(d->index, &st->evicted);
	room_now(d, &room);
	st->limit = disk_room_limit(&room, st->used);
	st->listings = d->others ? d->others(d->others_ctx) : 0;
	pthread_mutex_lock(&d->lock);
	st->hits = d->hits;
	st->misses = d->misses;
	st->damaged = d->damaged;
	st->puts = d->puts;
	st->refused = d->refused;
	st->write_errors = d->write_errors;
	st->writing = d->write_errno == 0 || d->write_errno == -ENOSPC;
	pthread_mutex_unlock(&d->lock);
}

/* ---- opening ---- */

/* Whether @name is one this mount's writers give their temporary files:
 * "<pid>.<sequence>", the pid in @pid. */
static bool tmp_name(const char *name, long *pid)
{
	char *end;

	if (name[0] < '1' || name[0] > '9')
		return false;
	*pid = strtol(name, &end, 10);
	if (*end != '.' || !end[1] || *pid <= 0)
		return false;
	for (end++; *end; end++) {
		if (*end < '0' || *end > '9')
			return false;
	}
	return true;
}

/* Remove what writers that are gone left in DIR/tmp: only files this user
 * wrote there under the names writers give, never the entries. */
static void clean_tmp(struct disk *d)
{
	struct dirent *e;
	struct stat st;
	int fd = openat(d->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	long pid;

	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(dir))) {
		if (!tmp_name(e->d_name, &pid) ||
		    (pid != getpid() &&
		     (kill((pid_t)pid, 0) == 0 || errno != ESRCH)))
			continue;
		if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !cachedir_trusted(&st))
			continue;
		unlinkat(dirfd(dir), e->d_name, 0);
	}
	closedir(dir);
}

/* Open the index in DIR/index.db, setting a damaged or foreign one aside
 * (index.db.bad, one at most) and starting anew: entries it counted are
 * found again when read. */
static int index_open(struct disk *d)
{
	char *path;
	int fd, err, tries;

	if (asprintf(&path, "%s/index.db", d->dir) < 0)
		return -ENOMEM;
	for (tries = 0; tries < 2; tries++) {
		fd = cachedir_prepare_db(d->dir_fd, "index.db");
		if (fd < 0) {
			err = fd;
			break;
		}
		close(fd);
		err = disk_index_open(path, &d->index);
		if (err != -EPROTO && err != -EBADMSG)
			break;
		log_err("data cache: %s is unreadable, starting a new one",
			path);
		renameat(d->dir_fd, "index.db", d->dir_fd, "index.db.bad");
		unlinkat(d->dir_fd, "index.db-wal", 0);
		unlinkat(d->dir_fd, "index.db-shm", 0);
	}
	free(path);
	return err;
}

/* The allocation unit of the file system of @fd (4 KiB when unsaid). */
static int64_t fs_block(int fd)
{
	struct statvfs sv;

	if (fstatvfs(fd, &sv) == 0 && sv.f_frsize > 0 &&
	    sv.f_frsize <= (1 << 20))
		return (int64_t)sv.f_frsize;
	return 4096;
}

struct disk *disk_open(const struct disk_config *cfg)
{
	struct disk *d = calloc(1, sizeof(*d));
	int err = -ENOMEM;

	if (!d)
		goto fail;
	d->dir_fd = d->tmp_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	d->cap = cfg->cap;
	d->others = cfg->others;
	d->others_ctx = cfg->ctx;
	if (asprintf(&d->dir, "%s/data", cfg->root) < 0) {
		d->dir = NULL;
		goto fail;
	}
	d->dir_fd = cachedir_subdir(cfg->root_fd, "data", true);
	if (d->dir_fd < 0) {
		err = d->dir_fd;
		goto fail;
	}
	d->tmp_fd = cachedir_subdir(d->dir_fd, "tmp", true);
	if (d->tmp_fd < 0) {
		err = d->tmp_fd;
		goto fail;
	}
	clean_tmp(d);
	err = index_open(d);
	if (err)
		goto fail;
	d->block = fs_block(d->dir_fd);
	return d;
fail:
	log_err("data cache in %s/data cannot be used (%s): reading without "
		"it",
		cfg->root, strerror(-err));
	disk_close(d);
	return NULL;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	disk_index_close(d->index);
	if (d->tmp_fd >= 0)
		close(d->tmp_fd);
	if (d->dir_fd >= 0)
		close(d->dir_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->dir);
	free(d);
}
