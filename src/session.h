/* The FUSE session of a mount: its mount point checked before anything,
 * made before the API is asked, then mounted, served and unmounted. */
#ifndef AVALAFS_SESSION_H
#define AVALAFS_SESSION_H

#include <stdint.h>

struct fs;
struct fuse_args;
struct fuse_session;
struct mount;

/* Refuse a mount point that is no folder, or that is a mount already,
 * live or dead. Runs before any request; 0, or -1 after one line on
 * stderr. */
int session_check_mountpoint(const char *path);

/* The session of @args serving @fs, with @max_read (0: not given) named in
 * the answer to INIT too. NULL after libfuse's line on stderr. */
struct fuse_session *session_new(struct fuse_args *args, int64_t max_read,
				 struct fs *fs);

/* Mount @m's session, leave for the background unless -f, serve until the
 * session ends and unmount: the exit code. How the start went is told
 * once, to the shell that waits on it too. */
int session_run(struct mount *m);

#endif
