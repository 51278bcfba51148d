/*  cli_dataset.c — `updraft dataset partition`: a labeled dataset split among K simulated
 *  clients, each a labeled directory the loaders read.
 *
 *    DIR/client-000/<class>/<index>.png   image sources (IDX, class folders): 8-bit grey PNG for
 *                                         1 channel, RGB for 3, the source's pixels unchanged
 *    DIR/client-000/data.csv              CSV sources (--format csv): features then "label"
 *    DIR/partition.json                   source, scheme, seed, classes, per-client counts
 *
 *  Which sample goes where is ud_partition's; this file only reads, reports and writes. Each
 *  client directory is written under a temporary name and renamed into place; partition.json is
 *  written last (atomically), so a directory with one is complete. An existing non-empty DIR is
 *  refused unless it holds a partition.json (an earlier partition, then replaced).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "updraft/ud_clock.h"
#include "updraft/ud_data.h"
#include "updraft/ud_jsonw.h"
#include "updraft/ud_partition.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

#define PART "dataset partition" /* the command, in messages */
struct part_opts {
    const char *data, *scheme_s, *out, *format, *label_column;
    long long clients, seed, min_size, skip;
    int json, skip_bad, seed_set;
    struct ud_shape input;
};

static void parse_args(int argc, char **argv, struct part_opts *o)
{
    struct cli_args args;
    cli_parse(PART, argc, argv, &args);
    if (args.nwords)
        cli_die(PART, 2, "unexpected argument '%s' (try updraft dataset partition --help)",
                argv[0]);
    memset(o, 0, sizeof *o);
    o->data = cli_arg(&args, "--data");
    o->scheme_s = cli_arg(&args, "--scheme");
    o->out = cli_arg(&args, "--out");
    o->label_column = cli_arg(&args, "--label-column");
    o->json = cli_arg(&args, "--json") != NULL;
    o->skip_bad = cli_arg(&args, "--skip-bad") != NULL;
    const char *v;
    o->clients = (v = cli_arg(&args, "--clients"))
                     ? cli_parse_ll(PART, "--clients", v, 1, UD_PARTITION_MAX_CLIENTS)
                     : -1;
    if ((v = cli_arg(&args, "--seed")))
        o->seed = cli_parse_ll(PART, "--seed", v, 0, 1LL << 62), o->seed_set = 1;
    if ((v = cli_arg(&args, "--format")) && strcmp(v, "png") && strcmp(v, "csv"))
        cli_die(PART, 2, "--format: '%s' is not png or csv", v);
    o->format = v;
    o->min_size =
        (v = cli_arg(&args, "--min-size")) ? cli_parse_ll(PART, "--min-size", v, 0, 1LL << 32) : 10;
    if ((v = cli_arg(&args, "--skip")))
        o->skip = cli_parse_ll(PART, "--skip", v, 0, 1LL << 40);
    if ((v = cli_arg(&args, "--input")))
        cli_parse_shape(PART, v, &o->input);
    if (!o->data || o->clients < 0 || !o->scheme_s || !o->out || !o->seed_set)
        cli_die(PART, 2,
                "--data, --clients, --scheme, --seed and --out are required (try updraft dataset "
                "partition --help)");
}

/* ---- Output directory ---- */

static int is_client_entry(const char *name)
{
    return strncmp(name, "client-", 7) == 0 || strncmp(name, ".tmp-client-", 12) == 0;
}

/* Checks DIR: absent (created), empty, or an earlier partition (its client directories and
 * temporaries removed). Anything else is refused. */
static void prepare_out(const char *dir, int *replacing)
{
    *replacing = 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || mkdir(dir, 0777) != 0)
            cli_die(PART, 1, "--out %s: %s", dir, strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode))
        cli_die(PART, 1, "--out %s exists and is not a directory", dir);
    char pj[4200];
    snprintf(pj, sizeof pj, "%s/partition.json", dir);
    int has_pj = access(pj, F_OK) == 0;
    DIR *d = opendir(dir);
    if (!d)
        cli_die(PART, 1, "--out %s: %s", dir, strerror(errno));
    struct dirent *ent;
    int foreign = 0;
    char first[256] = "";
    while ((ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        if (strncmp(ent->d_name, ".tmp-client-", 12) == 0)
            continue; /* an interrupted run's: ours to remove */
        if (has_pj && (is_client_entry(ent->d_name) || !strcmp(ent->d_name, "partition.json")))
            continue;
        if (!foreign)
            snprintf(first, sizeof first, "%s", ent->d_name);
        foreign++;
    }
    closedir(d);
    if (foreign && !has_pj)
        cli_die(PART, 1,
                "--out %s exists and is not empty (it holds '%s'%s) and has no partition.json, so "
                "it is not an earlier partition: refusing to write into it; choose a new directory "
                "or empty it",
                dir, first, foreign > 1 ? " and more" : "");
    if (foreign)
        cli_die(PART, 1,
                "--out %s holds an earlier partition but also '%s'%s, which a partition does not "
                "write: refusing to replace it; move that away or choose a new directory",
                dir, first, foreign > 1 ? " and more" : "");
    *replacing = has_pj;
    /* Leftover temporaries of an interrupted run go now. */
    d = opendir(dir);
    while (d && (ent = readdir(d))) {
        if (strncmp(ent->d_name, ".tmp-client-", 12) == 0) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
            struct ud_err e = {0};
            ud_file_remove_tree(p, false, NULL, &e); /* one that stays fails its mkdir */
        }
    }
    if (d)
        closedir(d);
}

/* Removes the earlier partition's client directories and partition.json. */
static void remove_old(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        cli_die(PART, 1, "--out %s: %s", dir, strerror(errno));
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (strncmp(ent->d_name, "client-", 7) != 0 && strcmp(ent->d_name, "partition.json") != 0)
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
        struct ud_err e = {0};
        if (ud_file_remove_tree(p, false, NULL, &e) != 0)
            cli_die(PART, 1, "cannot remove the earlier partition: %s", e.msg);
    }
    closedir(d);
}

/* ---- Writers ---- */

/* A PNG encoded in memory, then written with one write(): 60,000 small files a few seconds. */
struct membuf {
    uint8_t *p;
    size_t len, cap;
};

/* Encodes one (C, H, W) byte sample (C 1: grey, 3: RGB) as an 8-bit PNG into b. */
static int png_encode(const uint8_t *chw, struct ud_shape sh, uint8_t *rows, struct membuf *b)
{
    size_t plane = (size_t)sh.h * (size_t)sh.w;
    const uint8_t *px = chw;
    if (sh.c == 3) { /* (C, H, W) -> interleaved RGB */
        for (size_t p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                rows[3 * p + (size_t)c] = chw[(size_t)c * plane + p];
        px = rows;
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)sh.w;
    im.height = (png_uint_32)sh.h;
    im.format = sh.c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    size_t need = PNG_IMAGE_PNG_SIZE_MAX(im);
    if (need > b->cap) {
        uint8_t *q = realloc(b->p, need);
        if (!q)
            return -1;
        b->p = q;
        b->cap = need;
    }
    png_alloc_size_t len = b->cap;
    int ok = png_image_write_to_memory(&im, b->p, &len, 0, px, 0, NULL);
    png_image_free(&im);
    b->len = len;
    return ok ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        cli_die(PART, 1, "cannot create %s: %s", path, strerror(errno));
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            cli_die(PART, 1, "cannot write %s: %s", path, w < 0 ? strerror(errno) : "short write");
        p += w;
        len -= (size_t)w;
    }
    if (close(fd) != 0)
        cli_die(PART, 1, "cannot write %s: %s", path, strerror(errno));
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && s[0] != '\0') {
        fputs(s, f);
        return;
    }
    putc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            putc('"', f);
        putc(*s, f);
    }
    putc('"', f);
}

/* ---- The command ---- */

/* What the writer threads share (read-only) and what each does: clients first, first+step... */
struct writer {
    const struct part_opts *o;
    const ud_dataset_t *ds;
    const char *format;
    uint32_t K;
    int C;
    const int32_t *labels;
    const uint32_t *idx;
    const size_t *off;
    const uint64_t *counts;
    const char *const *cdir;
    size_t plen;
    int digits;
};
struct writer_job {
    const struct writer *w;
    uint32_t first, step;
};

/* Writes one client's directory under its temporary name. */
static void write_client(const struct writer *w, uint32_t k, char *tmp, char *path, uint8_t *rows,
                         float *fx, struct membuf *mb)
{
    const ud_dataset_t *ds = w->ds;
    size_t isize = ud_dataset_input_size(ds);
    struct ud_shape sh = ud_dataset_shape(ds);
    snprintf(tmp, w->plen, "%s/.tmp-client-%03u", w->o->out, k);
    if (mkdir(tmp, 0777) != 0)
        cli_die(PART, 1, "cannot create %s: %s", tmp, strerror(errno));
    if (strcmp(w->format, "png") == 0) {
        for (int c = 0; c < w->C; c++) {
            if (!w->counts[(size_t)k * (size_t)w->C + (size_t)c])
                continue; /* the loader refuses empty class folders */
            snprintf(path, w->plen, "%s/%s", tmp, w->cdir[c]);
            if (mkdir(path, 0777) != 0)
                cli_die(PART, 1, "cannot create %s: %s", path, strerror(errno));
        }
        for (size_t j = w->off[k]; j < w->off[k + 1]; j++) {
            uint32_t i = w->idx[j];
            snprintf(path, w->plen, "%s/%s/%0*u.png", tmp, w->cdir[w->labels[i]], w->digits, i);
            if (png_encode(ud_dataset_pixels(ds, i), sh, rows, mb))
                cli_die(PART, 1, "cannot encode %s (out of memory)", path);
            write_file(path, mb->p, mb->len);
        }
        return;
    }
    snprintf(path, w->plen, "%s/data.csv", tmp);
    FILE *f = fopen(path, "w");
    if (!f)
        cli_die(PART, 1, "cannot create %s: %s", path, strerror(errno));
    for (size_t d = 0; d < isize; d++)
        fprintf(f, "f%zu,", d);
    fputs("label\n", f);
    for (size_t j = w->off[k]; j < w->off[k + 1]; j++) {
        uint32_t i = w->idx[j];
        ud_dataset_get(ds, i, fx);
        for (size_t d = 0; d < isize; d++)
            fprintf(f, "%.9g,", (double)fx[d]);
        csv_field(f, ud_dataset_class_name(ds, w->labels[i]));
        putc('\n', f);
    }
    if (fflush(f) != 0 || ferror(f) || fclose(f) != 0)
        cli_die(PART, 1, "cannot write %s: %s", path, strerror(errno));
}

static void *writer_run(void *arg)
{
    const struct writer_job *j = arg;
    const struct writer *w = j->w;
    size_t isize = ud_dataset_input_size(w->ds);
    char *tmp = malloc(w->plen), *path = malloc(w->plen);
    uint8_t *rows = malloc(isize ? isize : 1);
    float *fx = malloc(sizeof *fx * (isize ? isize : 1));
    struct membuf mb = {0};
    if (!tmp || !path || !rows || !fx)
        cli_die(PART, 1, "out of memory");
    for (uint32_t k = j->first; k < w->K; k += j->step)
        write_client(w, k, tmp, path, rows, fx, &mb);
    free(mb.p);
    free(fx);
    free(rows);
    free(path);
    free(tmp);
    return NULL;
}

/* Which sample goes to which client, by position in SRC, and the counts it gives. */
struct plan {
    size_t all, skip, n; /* samples in SRC, left out by --skip, partitioned */
    uint32_t K;
    int C;
    int32_t *labels;  /* (all) */
    uint32_t *client; /* (n): the client of sample skip + i */
    size_t *off;      /* (K + 1): client k's samples are idx[off[k] .. off[k + 1]) */
    uint32_t *idx;    /* (n): positions in SRC, grouped by client */
    uint64_t *counts; /* (K, C) */
    char **cdir;      /* (C): class folder names */
};

static void plan_deinit(struct plan *p)
{
    for (int c = 0; p->cdir && c < p->C; c++)
        free(p->cdir[c]);
    free(p->cdir);
    free(p->counts);
    free(p->idx);
    free(p->off);
    free(p->client);
    free(p->labels);
}

/* SRC, and the output format it takes (--format, else PNG for images and CSV for features). */
static ud_dataset_t *load_source(const struct part_opts *o, const char **format)
{
    struct ud_err e = {0};
    struct ud_load_opts lo = {.shape = o->input,
                              .skip_bad = o->skip_bad,
                              .label_column = o->label_column,
                              .warn = cli_warn,
                              .warn_user = (void *)PART};
    ud_dataset_t *ds = ud_dataset_load(o->data, &lo, &e);
    if (!ds)
        cli_die(PART, 1, "%s", e.msg);
    struct ud_shape sh = ud_dataset_shape(ds);
    int is_u8 = ud_dataset_pixels(ds, 0) != NULL;
    *format = o->format ? o->format : is_u8 ? "png" : "csv";
    if (strcmp(*format, "png") == 0 && !is_u8)
        cli_die(PART, 2, "--format png: %s holds numeric features, not images; use --format csv",
                o->data);
    if (strcmp(*format, "csv") == 0 && is_u8)
        cli_die(PART, 2, "--format csv: %s holds images; partitions of images are written as PNG",
                o->data);
    if (is_u8 && sh.c != 1 && sh.c != 3)
        cli_die(PART, 2,
                "%s: %d channels; PNG output takes 1 (grey) or 3 (RGB) (use --input 1,H,W or "
                "3,H,W)",
                o->data, sh.c);
    return ds;
}

/* The assignment of ds's samples (after --skip) to --clients clients (ud_partition). */
static void plan_assign(const struct part_opts *o, const ud_dataset_t *ds,
                        const struct ud_partition_scheme *scheme, struct plan *p)
{
    struct ud_err e = {0};
    memset(p, 0, sizeof *p);
    p->all = ud_dataset_count(ds);
    p->C = ud_dataset_num_classes(ds);
    /* --skip N leaves out the first N samples: those a cluster job took with max_samples N. */
    p->skip = (size_t)o->skip;
    if (p->skip >= p->all)
        cli_die(PART, 2, "--skip %zu: %s has only %zu samples", p->skip, o->data, p->all);
    p->n = p->all - p->skip;
    p->K = (uint32_t)o->clients;
    if ((size_t)p->K > p->n)
        cli_die(PART, 2, "--clients %u: %s has only %zu samples%s; each client needs at least one",
                p->K, o->data, p->n, p->skip ? " after --skip" : "");
    p->labels = malloc(sizeof *p->labels * p->all);
    p->client = malloc(sizeof *p->client * (p->n ? p->n : 1));
    p->off = malloc(sizeof *p->off * ((size_t)p->K + 1));
    p->counts = calloc((size_t)p->K * (size_t)p->C, sizeof *p->counts);
    if (!p->labels || !p->client || !p->off || !p->counts)
        cli_die(PART, 1, "out of memory");
    for (size_t i = 0; i < p->all; i++)
        p->labels[i] = ud_dataset_label(ds, i);
    int rc = ud_partition_assign(p->labels + p->skip, p->n, p->C, p->K, scheme, (uint64_t)o->seed,
                                 (size_t)o->min_size, p->client, &e);
    if (rc)
        cli_die(PART, rc == UD_EINVAL ? 2 : 1, "%s", e.msg);
    if (ud_partition_group(p->client, p->n, p->K, p->off, &p->idx, &e))
        cli_die(PART, 1, "%s", e.msg);
    for (size_t j = 0; j < p->n; j++) /* positions in SRC */
        p->idx[j] += (uint32_t)p->skip;
    for (size_t i = 0; i < p->n; i++)
        p->counts[(size_t)p->client[i] * (size_t)p->C + (size_t)p->labels[p->skip + i]]++;
}

/* Class folder names (ud_class_dir_name keeps distinct names distinct). */
static void plan_class_dirs(const struct part_opts *o, const ud_dataset_t *ds, struct plan *p)
{
    int is_u8 = ud_dataset_pixels(ds, 0) != NULL;
    p->cdir = calloc((size_t)p->C, sizeof *p->cdir);
    if (!p->cdir)
        cli_die(PART, 1, "out of memory");
    for (int c = 0; c < p->C; c++) {
        if (!(p->cdir[c] = ud_class_dir_name(ud_dataset_class_name(ds, c))))
            cli_die(PART, 1, "out of memory");
        if (is_u8 && !p->cdir[c][0])
            cli_die(PART, 1, "%s: class %d has an empty name, which no folder can carry", o->data,
                    c);
    }
}

/* Every client under a temporary name (up to 8 writer threads), then the swap: the earlier
 * partition out (when replacing), the new clients renamed in. */
static void write_clients(const struct part_opts *o, const ud_dataset_t *ds, const char *format,
                          const struct plan *p, int replacing)
{
    int digits = 1;
    for (size_t v = p->all - 1; v >= 10; v /= 10)
        digits++;
    size_t maxc = 0;
    for (int c = 0; c < p->C; c++)
        maxc = strlen(p->cdir[c]) > maxc ? strlen(p->cdir[c]) : maxc;
    size_t plen = strlen(o->out) + maxc + 96;
    struct writer w = {.o = o,
                       .ds = ds,
                       .format = format,
                       .K = p->K,
                       .C = p->C,
                       .labels = p->labels,
                       .idx = p->idx,
                       .off = p->off,
                       .counts = p->counts,
                       .cdir = (const char *const *)p->cdir,
                       .plen = plen,
                       .digits = digits};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    if ((uint32_t)nthreads > p->K)
        nthreads = (int)p->K;
    pthread_t th[8];
    struct writer_job jobs[8];
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (struct writer_job){.w = &w, .first = (uint32_t)t, .step = (uint32_t)nthreads};
        if (t > 0 && pthread_create(&th[t], NULL, writer_run, &jobs[t]) != 0)
            cli_die(PART, 1, "cannot start a writer thread");
    }
    writer_run(&jobs[0]);
    for (int t = 1; t < nthreads; t++)
        pthread_join(th[t], NULL);
    if (replacing)
        remove_old(o->out);
    char *tmp = malloc(plen), *fin = malloc(plen);
    if (!tmp || !fin)
        cli_die(PART, 1, "out of memory");
    for (uint32_t k = 0; k < p->K; k++) {
        snprintf(tmp, plen, "%s/.tmp-client-%03u", o->out, k);
        snprintf(fin, plen, "%s/client-%03u", o->out, k);
        if (rename(tmp, fin) != 0)
            cli_die(PART, 1, "cannot rename %s to %s: %s", tmp, fin, strerror(errno));
    }
    free(fin);
    free(tmp);
}

/* partition.json's text (the caller frees): source, scheme, seed, classes, counts, sizes. */
static char *partition_json(const struct part_opts *o, const ud_dataset_t *ds, const char *scheme,
                            const char *format, const struct plan *p, size_t *len)
{
    char *json = NULL;
    FILE *jf = open_memstream(&json, len);
    if (!jf)
        cli_die(PART, 1, "out of memory");
    fprintf(jf, "{\"source\":");
    ud_json_str(jf, o->data);
    fprintf(jf, ",\"scheme\":");
    ud_json_str(jf, scheme);
    fprintf(jf,
            ",\"seed\":%lld,\"clients\":%u,\"samples\":%zu,\"skip\":%zu,\"min_size\":%lld,"
            "\"format\":\"%s\"",
            o->seed, p->K, p->n, p->skip, o->min_size, format);
    fprintf(jf, ",\"classes\":");
    ud_json_str_array(jf, ud_dataset_classes(ds), p->C);
    fprintf(jf, ",\"counts\":[");
    for (uint32_t k = 0; k < p->K; k++) {
        fprintf(jf, "%s[", k ? "," : "");
        for (int c = 0; c < p->C; c++)
            fprintf(jf, "%s%llu", c ? "," : "",
                    (unsigned long long)p->counts[(size_t)k * (size_t)p->C + (size_t)c]);
        fprintf(jf, "]");
    }
    fprintf(jf, "],\"sizes\":[");
    for (uint32_t k = 0; k < p->K; k++)
        fprintf(jf, "%s%zu", k ? "," : "", p->off[k + 1] - p->off[k]);
    fprintf(jf, "]}\n");
    fclose(jf);
    return json;
}

/* The table for people: each client's size and class counts. */
static void print_plan(const struct part_opts *o, const ud_dataset_t *ds, const char *scheme,
                       const struct plan *p, int replacing)
{
    printf("%s: %zu samples, %d classes -> %u clients in %s (%s, seed %lld)%s\n", o->data, p->n,
           p->C, p->K, o->out, scheme, o->seed,
           replacing ? ", replacing the earlier partition" : "");
    printf("%-10s %8s", "client", "size");
    for (int c = 0; c < p->C; c++)
        printf(" %8.8s", ud_dataset_class_name(ds, c));
    putchar('\n');
    for (uint32_t k = 0; k < p->K; k++) {
        printf("client-%03u %8zu", k, p->off[k + 1] - p->off[k]);
        for (int c = 0; c < p->C; c++)
            printf(" %8llu", (unsigned long long)p->counts[(size_t)k * (size_t)p->C + (size_t)c]);
        putchar('\n');
    }
}

static int cmd_partition(int argc, char **argv)
{
    struct part_opts o;
    parse_args(argc, argv, &o);
    struct ud_err e = {0};
    struct ud_partition_scheme scheme;
    if (ud_partition_scheme_parse(o.scheme_s, &scheme, &e))
        cli_die(PART, 2, "--scheme: %s", e.msg);
    double t0 = ud_clock_mono();
    /* libpng's deflate state (~300 KB) per image would otherwise be an mmap and munmap each
     * time, with fresh zeroed pages (measured: 12 s of Fashion-MNIST's 60,000 PNGs became 8). */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);

    const char *format;
    ud_dataset_t *ds = load_source(&o, &format);
    struct plan p;
    plan_assign(&o, ds, &scheme, &p);
    double t_assign = ud_clock_mono();
    plan_class_dirs(&o, ds, &p);
    int replacing;
    prepare_out(o.out, &replacing);
    write_clients(&o, ds, format, &p, replacing);

    /* partition.json last: a directory with one is complete. */
    char sbuf[64], path[4200];
    ud_partition_scheme_format(&scheme, sbuf, sizeof sbuf);
    size_t jlen = 0;
    char *json = partition_json(&o, ds, sbuf, format, &p, &jlen);
    snprintf(path, sizeof path, "%s/partition.json", o.out);
    if (ud_file_write_atomic(path, json, jlen, &e))
        cli_die(PART, 1, "%s", e.msg);
    double t_end = ud_clock_mono();
    if (o.json) {
        fputs(json, stdout);
    } else {
        print_plan(&o, ds, sbuf, &p, replacing);
        fprintf(stderr, "partitioned in %.2f s (assignment %.3f s, writing %.2f s)\n", t_end - t0,
                t_assign - t0, t_end - t_assign);
    }
    free(json);
    plan_deinit(&p);
    ud_dataset_destroy(&ds);
    return 0;
}

int cli_dataset_main(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs("usage:\n", argc < 1 ? stderr : stdout);
        cli_usage_of(argc < 1 ? stderr : stdout, "dataset");
        return argc < 1 ? 2 : 0;
    }
    if (strcmp(argv[0], "partition") == 0)
        return cmd_partition(argc - 1, argv + 1);
    fprintf(stderr, "updraft dataset: unknown subcommand '%s' (only: partition)\n", argv[0]);
    return 2;
}
