/*  ud_file.h — files and directories as every updraft program uses them: read a whole file
 *  under a limit, write one atomically, make a directory path, remove a tree, sync a directory,
 *  and check before long work that an output path can be written.
 *
 *  Messages start with the path. Nothing here prints or exits.
 */
#ifndef UD_FILE_H
#define UD_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_FILE_PATH_MAX 4096 /* bytes of a path these functions build, with its NUL */

/* Reads a whole file (at most max bytes) into a fresh buffer (*data, caller frees with free()),
 * followed by a NUL byte not counted in *len, so text files can be parsed in place. Pipes and
 * files that grow while read are bounded by max too. Returns 0, UD_ENOTFOUND, UD_ELIMIT
 * (larger than max), UD_ENOMEM or UD_EIO (also for a directory). */
int ud_file_read(const char *path, size_t max, char **data, size_t *len, struct ud_err *e);

/* Writes len bytes to path atomically: a temporary file in the same directory, fsync, rename,
 * fsync of the directory. Shared by every artefact updraft writes. Returns 0 or UD_EIO /
 * UD_ENOMEM / UD_EINVAL; nothing is left behind on failure. */
int ud_file_write_atomic(const char *path, const void *data, size_t len, struct ud_err *e);

/* fsync of a directory, so entries created or renamed in it survive a crash. File systems that
 * cannot sync a directory (EINVAL, ENOTSUP) count as success. Returns 0 or UD_EIO. */
int ud_file_sync_dir(const char *dir, struct ud_err *e);

/* mkdir -p with mode 0777 (less the umask). *created (may be NULL) says whether the last
 * component was new. The parent of every directory created is synced. Returns 0, UD_ELIMIT
 * (path over UD_FILE_PATH_MAX) or UD_EIO (also when a component exists and is not a
 * directory). */
int ud_file_mkdirs(const char *path, bool *created, struct ud_err *e);

/* Removes the directory at path and what it holds (with keep_top, empties it and keeps it).
 * first, when not NULL, names an entry removed first in every directory, before the rest: a
 * removal cut short then leaves that entry missing (checkpoints use their DONE marker).
 * Symbolic links are removed, never followed; a path that does not exist is fine; nesting
 * deeper than 8 directories is refused. Returns 0 or UD_EIO. */
int ud_file_remove_tree(const char *path, bool keep_top, const char *first, struct ud_err *e);

/* SHA-256 of the file at path, read as a stream, as 64 lowercase hex digits and a NUL in hex.
 * Returns 0, or UD_EIO when it cannot be opened or read. */
int ud_file_sha256(const char *path, char hex[65], struct ud_err *e);

/* Checks, before long work, that a file could be written at path: its directory exists and
 * is writable, and path is not a directory. Returns 0 or UD_EIO saying which. */
int ud_file_check_writable(const char *path, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif
