/*  ud_file.c — whole-file reads, atomic writes, mkdir -p, tree removal, directory fsync and the
 *  writable-output check (contract: ud_file.h). The durability rule: a file is in place only
 *  after its data, its rename and its directory entry were synced.
 */
#include "updraft/ud_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sodium.h>

#define FILE_TREE_DEPTH 8

/* fsync of a directory, so entries created or renamed in it survive a crash. File systems
 * that cannot sync a directory say EINVAL or ENOTSUP; there is nothing more to do then. */
int ud_file_sync_dir(const char *dir, struct ud_err *e)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ud_err_set(e, UD_EIO, "%s: cannot open to sync: %s", dir, strerror(errno));
    int rc = 0;
    if (fsync(fd) < 0 && errno != EINVAL && errno != ENOTSUP)
        rc = ud_err_set(e, UD_EIO, "%s: fsync failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* mkdir -p; *created says whether the last component was new. The parent of every directory
 * created is synced, so the new entries survive a crash like the files that go in them. */
int ud_file_mkdirs(const char *path, bool *created, struct ud_err *e)
{
    char tmp[UD_FILE_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s", path);
    if (n <= 0 || n >= (int)sizeof tmp)
        return ud_err_set(e, UD_ELIMIT, "%.200s...: the path is over %d bytes", path,
                          UD_FILE_PATH_MAX - 1);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    if (created)
        *created = false;
    for (char *p = tmp + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(tmp, 0777) == 0) {
            if (created)
                *created = last;
            char *slash = strrchr(tmp, '/');
            int rc;
            if (slash == tmp) {
                rc = ud_file_sync_dir("/", e);
            } else if (slash) {
                *slash = '\0';
                rc = ud_file_sync_dir(tmp, e);
                *slash = '/';
            } else {
                rc = ud_file_sync_dir(".", e);
            }
            if (rc < 0)
                return rc;
        } else if (errno == EEXIST) {
            struct stat st;
            if (stat(tmp, &st) < 0 || !S_ISDIR(st.st_mode))
                return ud_err_set(e, UD_EIO, "%s: exists and is not a directory", tmp);
        } else {
            return ud_err_set(e, UD_EIO, "%s: cannot create the directory: %s", tmp,
                              strerror(errno));
        }
        if (last)
            return 0;
        *p = '/';
    }
}

/* Removes name (in the directory parentfd) and, when it is a directory, what it holds; the
 * entry named first goes first (a checkpoint's DONE, so that a removal cut short leaves an
 * incomplete checkpoint rather than a corrupt one). With keep_top the directory itself stays
 * (emptied). Things that vanish meanwhile are fine. Symbolic links are removed, never followed. */
static int file_rmtree(int parentfd, const char *name, const char *shown, bool keep_top,
                       const char *first, int depth, struct ud_err *e)
{
    if (unlinkat(parentfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return ud_err_set(e, UD_EIO, "%s/%s: cannot remove: %s", shown, name, strerror(errno));
    if (depth >= FILE_TREE_DEPTH)
        return ud_err_set(e, UD_EIO, "%s/%s: nested deeper than %d directories, not removed", shown,
                          name, FILE_TREE_DEPTH);
    int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return ud_err_set(e, UD_EIO, "%s/%s: cannot open: %s", shown, name, strerror(errno));
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return ud_err_set(e, UD_EIO, "%s/%s: cannot list: %s", shown, name, strerror(errno));
    }
    char sub[UD_FILE_PATH_MAX];
    snprintf(sub, sizeof sub, "%s/%s", shown, name);
    int rc = 0;
    if (first && unlinkat(fd, first, 0) < 0 && errno != ENOENT && errno != EISDIR)
        rc = ud_err_set(e, UD_EIO, "%s/%s: cannot remove: %s", sub, first, strerror(errno));
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = file_rmtree(fd, de->d_name, sub, false, first, depth + 1, e);
    }
    closedir(d);
    if (rc == 0 && !keep_top && unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = ud_err_set(e, UD_EIO, "%s: cannot remove the directory: %s", sub, strerror(errno));
    return rc;
}

/* Removes (or, keep_top, empties) the directory at path. */
int ud_file_remove_tree(const char *path, bool keep_top, const char *first, struct ud_err *e)
{
    char parent[UD_FILE_PATH_MAX], base[UD_FILE_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : parent);
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        snprintf(parent, sizeof parent, "/");
    else
        *slash = '\0';
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        if (errno == ENOENT)
            return 0;
        return ud_err_set(e, UD_EIO, "%s: cannot open: %s", parent, strerror(errno));
    }
    int rc = file_rmtree(pfd, base, parent, keep_top, first, 0, e);
    close(pfd);
    return rc;
}

/* Writes all of data, retrying short writes and EINTR. Returns 0 or -1 with errno set. */
static int file_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ud_file_write_atomic(const char *path, const void *data, size_t len, struct ud_err *e)
{
    if (!path || !*path || (!data && len))
        return ud_err_set(e, UD_EINVAL, "ud_file_write_atomic: no path or no data");
    if (sodium_init() < 0)
        return ud_err_set(e, UD_EINTERNAL, "libsodium failed to initialise");
    int rc;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64);
    char *dir = malloc(plen + 2);
    if (!tmp || !dir) {
        rc = ud_err_set(e, UD_ENOMEM, "%s: out of memory", path);
        goto out_free;
    }
    /* The directory, so the rename can be made durable. */
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }

    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        snprintf(tmp, plen + 64, "%s.tmp.%ld.%08x", path, (long)getpid(),
                 (unsigned)randombytes_random());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = errno;
        if (fd < 0 && err != EEXIST)
            break;
    }
    if (fd < 0) {
        rc = ud_err_set(e, UD_EIO, "%s: cannot create a temporary file next to it: %s", path,
                        strerror(err));
        goto out_free;
    }
    if (file_write_all(fd, data, len) < 0) {
        rc = ud_err_set(e, UD_EIO, "%s: write failed: %s", path, strerror(errno));
        goto out_close_unlink;
    }
    if (fsync(fd) < 0) {
        rc = ud_err_set(e, UD_EIO, "%s: fsync failed: %s", path, strerror(errno));
        goto out_close_unlink;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = ud_err_set(e, UD_EIO, "%s: close failed: %s", path, strerror(errno));
        goto out_unlink;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = ud_err_set(e, UD_EIO, "%s: cannot rename the temporary file into place: %s", path,
                        strerror(errno));
        goto out_unlink;
    }
    /* The file is in place; syncing the directory makes the rename survive a crash. File
     * systems that cannot sync a directory say EINVAL, and there is nothing more to do. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (fsync(dfd) < 0 && errno != EINVAL && errno != ENOTSUP)) {
        rc = ud_err_set(e, UD_EIO, "%s: written, but syncing directory %s failed: %s", path, dir,
                        strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto out_free;
    }
    close(dfd);
    rc = 0;
    goto out_free;

out_close_unlink:
    close(fd);
out_unlink:
    unlink(tmp);
out_free:
    free(dir);
    free(tmp);
    return rc;
}

int ud_file_read(const char *path, size_t max, char **data, size_t *len, struct ud_err *e)
{
    if (!path || !data || !len)
        return ud_err_set(e, UD_EINVAL, "ud_file_read: NULL argument");
    *data = NULL;
    *len = 0;
    if (max > SIZE_MAX / 2)
        max = SIZE_MAX / 2;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ud_err_set(e, UD_ENOTFOUND, "%s: no such file", path);
        return ud_err_set(e, UD_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    int rc;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = ud_err_set(e, UD_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = ud_err_set(e, UD_EIO, "%s: is a directory", path);
        goto out_close;
    }
    size_t cap = 4096;
    if (S_ISREG(st.st_mode)) {
        if ((uintmax_t)st.st_size > max) {
            rc = ud_err_set(e, UD_ELIMIT, "%s: the file is %lld bytes, the limit is %zu", path,
                            (long long)st.st_size, max);
            goto out_close;
        }
        cap = (size_t)st.st_size;
    }
    if (cap > max)
        cap = max;
    buf = malloc(cap + 1);
    if (!buf) {
        rc = ud_err_set(e, UD_ENOMEM, "%s: cannot allocate %zu bytes", path, cap + 1);
        goto out_close;
    }
    /* Read to EOF: the file may have changed since fstat, and pipes have no size. When the
     * buffer is full, one probe byte tells EOF from more data without growing it. */
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = ud_err_set(e, UD_EIO, "%s: read failed: %s", path, strerror(errno));
                goto out_free;
            }
            if (r == 0)
                break;
            if (cap == max) {
                rc = ud_err_set(e, UD_ELIMIT, "%s: the file is over the limit of %zu bytes", path,
                                max);
                goto out_free;
            }
            size_t ncap = cap < 4096 ? 4096 : cap > max / 2 ? max : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                rc = ud_err_set(e, UD_ENOMEM, "%s: cannot allocate %zu bytes", path, ncap + 1);
                goto out_free;
            }
            buf = nb;
            cap = ncap;
            buf[n++] = probe;
            continue;
        }
        size_t want = cap - n;
        ssize_t r = read(fd, buf + n, want > ((size_t)1 << 30) ? ((size_t)1 << 30) : want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = ud_err_set(e, UD_EIO, "%s: read failed: %s", path, strerror(errno));
            goto out_free;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;

out_free:
    free(buf);
out_close:
    close(fd);
    return rc;
}

int ud_file_sha256(const char *path, char hex[65], struct ud_err *e)
{
    if (sodium_init() < 0)
        return ud_err_set(e, UD_EINTERNAL, "libsodium failed to initialise");
    FILE *f = fopen(path, "rb");
    if (!f)
        return ud_err_set(e, UD_EIO, "%s: %s", path, strerror(errno));
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_hash_sha256_update(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return ud_err_set(e, UD_EIO, "%s: read error", path);
    unsigned char out[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&s, out);
    sodium_bin2hex(hex, 65, out, sizeof out);
    return 0;
}

int ud_file_check_writable(const char *path, struct ud_err *e)
{
    char dir[UD_FILE_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s", path ? path : "");
    if (n <= 0 || n >= (int)sizeof dir)
        return ud_err_set(e, UD_EIO, "%.200s: not a usable path", path ? path : "(none)");
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ud_err_set(e, UD_EIO, "%s: directory %s does not exist", path, dir);
    if (access(dir, W_OK) != 0)
        return ud_err_set(e, UD_EIO, "%s: cannot write to %s: %s", path, dir, strerror(errno));
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return ud_err_set(e, UD_EIO, "%s: is a directory", path);
    return 0;
}
