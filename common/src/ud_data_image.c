/*  ud_data_image.c — a directory of class folders of PNG and JPEG images.
 *
 *  DIR/<class>/<file>.png|.jpg|.jpeg (extensions in any case; hidden entries and other files
 *  ignored). Classes are the folder names sorted with strcmp, files within a class likewise, so
 *  that two loads of the same tree give the same samples in the same order.
 *
 *  Decoding reads each file into memory and picks the decoder by its first bytes (so a PNG
 *  named .jpg still loads). Both libraries report errors by longjmp from our handlers, which
 *  also keep their warnings from reaching stderr: a corrupt file is an error naming it (JPEG
 *  warnings such as "premature end of data" count as corrupt), never a crash or a message on
 *  the terminal. Sizes from the file header are checked before the pixels are decoded.
 *
 *  Pixels are converted to the target channel count (RGB -> grey by luminance 0.299, 0.587,
 *  0.114; grey -> RGB by replication; alpha dropped; palettes and 16-bit samples expanded or
 *  scaled to 8 bits) and resized bilinearly with half-pixel centres (PyTorch's
 *  align_corners=False, no antialiasing) into the dataset's (C, H, W) bytes.
 */
#include "ud_data_impl.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

/* A decoded image: (h, w, c) interleaved bytes, c = 1 (grey) or 3 (RGB). */
struct image {
    int w, h, c;
    uint8_t *px;
};

/* The limits on an image file's declared size, checked before its pixels are decoded: 1 when
 * w x h is over them (the reason in msg), else 0. */
static int image_size_over(unsigned w, unsigned h, char *msg, size_t msz)
{
    if (w == 0 || h == 0 || w > UD_DATA_MAX_IMAGE_SIDE || h > UD_DATA_MAX_IMAGE_SIDE) {
        snprintf(msg, msz, "image of %u x %u pixels (limit %d x %d)", w, h, UD_DATA_MAX_IMAGE_SIDE,
                 UD_DATA_MAX_IMAGE_SIDE);
        return 1;
    }
    if ((uint64_t)w * h > UD_DATA_MAX_IMAGE_PIXELS) {
        snprintf(msg, msz, "image of %u x %u pixels (limit %llu pixels)", w, h,
                 (unsigned long long)UD_DATA_MAX_IMAGE_PIXELS);
        return 1;
    }
    return 0;
}

/* ---- PNG ---- */

struct png_job {
    const uint8_t *data;
    size_t len, pos;
    png_structp png;
    png_infop info;
    png_bytep *rows;
    struct image *im;
    char msg[200];
};

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    /* Benign (e.g. an unknown or bad ancillary chunk): the pixels are fine. Not printed. */
}

static void png_on_read(png_structp png, png_bytep out, size_t n)
{
    struct png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos)
        png_error(png, "file ends early (truncated)");
    memcpy(out, j->data + j->pos, n);
    j->pos += n;
}

/* The part that runs under setjmp; everything it changes lives in *j, not in locals. */
static int png_decode_run(struct png_job *j)
{
    if (setjmp(png_jmpbuf(j->png)))
        return -1;
    png_set_read_fn(j->png, j, png_on_read);
    /* libpng's own limit (1e6) would fail as a format error; ours, below, says UD_ELIMIT. */
    png_set_user_limits(j->png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_malloc_max(j->png, (png_alloc_size_t)1 << 24);
    png_read_info(j->png, j->info);
    png_uint_32 w = png_get_image_width(j->png, j->info);
    png_uint_32 h = png_get_image_height(j->png, j->info);
    if (image_size_over(w, h, j->msg, sizeof j->msg))
        return -2;
    png_set_expand(j->png); /* palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha */
    png_set_scale_16(j->png);
    png_set_strip_alpha(j->png);
    png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    int c = png_get_channels(j->png, j->info);
    if ((c != 1 && c != 3) || png_get_rowbytes(j->png, j->info) != (size_t)w * (size_t)c) {
        snprintf(j->msg, sizeof j->msg, "unexpected PNG pixel layout (%d channels)", c);
        return -1;
    }
    j->im->px = malloc((size_t)w * h * (size_t)c);
    j->rows = malloc(h * sizeof *j->rows);
    if (!j->im->px || !j->rows) {
        snprintf(j->msg, sizeof j->msg, "out of memory for %u x %u pixels", (unsigned)w,
                 (unsigned)h);
        return -3;
    }
    for (png_uint_32 y = 0; y < h; y++)
        j->rows[y] = j->im->px + (size_t)y * w * (size_t)c;
    png_read_image(j->png, j->rows);
    png_read_end(j->png, NULL);
    j->im->w = (int)w;
    j->im->h = (int)h;
    j->im->c = c;
    return 0;
}

/* Returns 0, or a UD_E* code with the reason in msg. */
static int png_decode(const uint8_t *data, size_t len, struct image *im, char *msg, size_t msz)
{
    struct png_job j = {.data = data, .len = len, .im = im};
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j, png_on_error, png_on_warning);
    if (!j.png) {
        snprintf(msg, msz, "out of memory for the PNG decoder");
        return UD_ENOMEM;
    }
    j.info = png_create_info_struct(j.png);
    int r = j.info ? png_decode_run(&j) : -3;
    png_destroy_read_struct(&j.png, j.info ? &j.info : NULL, NULL);
    free(j.rows);
    if (r == 0)
        return 0;
    free(im->px);
    im->px = NULL;
    snprintf(msg, msz, "%s%s",
             r == -1 ? "corrupt PNG: " : "PNG: ", j.msg[0] ? j.msg : "out of memory");
    return r == -1 ? UD_EFORMAT : r == -2 ? UD_ELIMIT : UD_ENOMEM;
}

/* ---- JPEG ---- */

struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    jmp_buf jb;
    struct image *im;
    char msg[JMSG_LENGTH_MAX + 32];
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_job *j = (struct jpeg_job *)cinfo->client_data;
    char buf[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, buf);
    snprintf(j->msg, sizeof j->msg, "%s", buf);
    longjmp(j->jb, 1);
}

/* Level -1 is a warning about corrupt data (truncation, bad Huffman codes): an error for us.
 * Trace levels (>= 0) are ignored. Nothing is printed. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_on_error(cinfo);
}

static void jpeg_on_output(j_common_ptr cinfo)
{
}

static int jpeg_decode_run(struct jpeg_job *j, const uint8_t *data, size_t len)
{
    if (setjmp(j->jb))
        return -1;
    jpeg_create_decompress(&j->cinfo);
    j->cinfo.mem->max_memory_to_use = (long)1 << 30;
    jpeg_mem_src(&j->cinfo, data, (unsigned long)len);
    jpeg_read_header(&j->cinfo, TRUE);
    JDIMENSION w = j->cinfo.image_width, h = j->cinfo.image_height;
    if (image_size_over(w, h, j->msg, sizeof j->msg))
        return -2;
    switch (j->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        j->cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_RGB:
    case JCS_YCbCr:
        j->cinfo.out_color_space = JCS_RGB;
        break;
    default:
        snprintf(j->msg, sizeof j->msg, "unsupported JPEG colour space %d (CMYK?)",
                 (int)j->cinfo.jpeg_color_space);
        return -4;
    }
    jpeg_start_decompress(&j->cinfo);
    int c = j->cinfo.output_components;
    if ((c != 1 && c != 3) || j->cinfo.output_width != w || j->cinfo.output_height != h) {
        snprintf(j->msg, sizeof j->msg, "unexpected JPEG output layout");
        return -1;
    }
    j->im->px = malloc((size_t)w * h * (size_t)c);
    if (!j->im->px) {
        snprintf(j->msg, sizeof j->msg, "out of memory for %u x %u pixels", (unsigned)w,
                 (unsigned)h);
        return -3;
    }
    while (j->cinfo.output_scanline < h) {
        JSAMPROW row = j->im->px + (size_t)j->cinfo.output_scanline * w * (size_t)c;
        if (jpeg_read_scanlines(&j->cinfo, &row, 1) != 1) {
            snprintf(j->msg, sizeof j->msg, "JPEG data ends early");
            return -1;
        }
    }
    jpeg_finish_decompress(&j->cinfo);
    j->im->w = (int)w;
    j->im->h = (int)h;
    j->im->c = c;
    return 0;
}

static int jpeg_decode(const uint8_t *data, size_t len, struct image *im, char *msg, size_t msz)
{
    struct jpeg_job *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(msg, msz, "out of memory for the JPEG decoder");
        return UD_ENOMEM;
    }
    j->im = im;
    j->cinfo.err = jpeg_std_error(&j->jerr);
    j->jerr.error_exit = jpeg_on_error;
    j->jerr.emit_message = jpeg_on_message;
    j->jerr.output_message = jpeg_on_output;
    j->cinfo.client_data = j;
    int r = jpeg_decode_run(j, data, len);
    jpeg_destroy_decompress(&j->cinfo);
    int rc = 0;
    if (r != 0) {
        free(im->px);
        im->px = NULL;
        snprintf(msg, msz, "%s%s", r == -1 ? "corrupt JPEG: " : "JPEG: ", j->msg);
        rc = r == -2 ? UD_ELIMIT : r == -3 ? UD_ENOMEM : r == -4 ? UD_EUNSUPPORTED : UD_EFORMAT;
    }
    free(j);
    return rc;
}

/* ---- Decoding one file ---- */

/* Picks the decoder by the first bytes. Returns 0 (im->px the caller's) or a UD_E* code with
 * the reason in msg (im->px NULL). */
static int image_decode(const void *data, size_t len, struct image *im, char *msg, size_t msz)
{
    const uint8_t *d = data;
    im->px = NULL;
    if (len >= 8 && png_sig_cmp(d, 0, 8) == 0)
        return png_decode(d, len, im, msg, msz);
    if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return jpeg_decode(d, len, im, msg, msz);
    snprintf(msg, msz, "not a PNG or JPEG file (%zu bytes)", len);
    return UD_EFORMAT;
}

static int image_decode_file(const char *path, struct image *im, char *msg, size_t msz,
                             struct ud_err *e)
{
    char *data;
    size_t len;
    im->px = NULL;
    int rc = ud__data_read_file(path, UD_DATA_MAX_IMAGE_FILE, &data, &len, e);
    if (rc) {
        /* The caller names the file; keep only the reason. */
        const char *why = e->msg;
        size_t lp = strlen(path);
        if (strncmp(why, path, lp) == 0 && strncmp(why + lp, ": ", 2) == 0)
            why += lp + 2;
        snprintf(msg, msz, "%s", why);
        return rc;
    }
    rc = image_decode(data, len, im, msg, msz);
    free(data);
    return rc;
}

/* Where output column (or row) x of n samples a source line of sw pixels: the two source
 * pixels i0, i1 and the weight f of i1, with half-pixel centres and edges clamped. */
static void bilinear_tap(int x, int n, int sw, int *i0, int *i1, float *f)
{
    float s = ((float)x + 0.5f) * ((float)sw / (float)n) - 0.5f;
    if (s < 0.0f)
        s = 0.0f;
    int a = (int)s;
    if (a > sw - 1)
        a = sw - 1;
    *i0 = a;
    *i1 = a + 1 < sw ? a + 1 : sw - 1;
    *f = s - (float)a;
    if (*f > 1.0f)
        *f = 1.0f;
}

/* Resizes src ((sh, sw, sc) interleaved) bilinearly into out ((t.c, t.h, t.w) planar); a grey
 * source (sc 1) fills every output channel. */
static int resize_bilinear(const uint8_t *src, int sw, int sh, int sc, struct ud_shape t,
                           uint8_t *out)
{
    size_t plane = (size_t)t.h * (size_t)t.w;
    int *x0 = malloc((size_t)t.w * 2 * sizeof *x0);
    float *fx = malloc((size_t)t.w * sizeof *fx);
    if (!x0 || !fx) {
        free(x0);
        free(fx);
        return UD_ENOMEM;
    }
    int *x1 = x0 + t.w;
    for (int x = 0; x < t.w; x++)
        bilinear_tap(x, t.w, sw, &x0[x], &x1[x], &fx[x]);
    for (int y = 0; y < t.h; y++) {
        int y0, y1;
        float fy;
        bilinear_tap(y, t.h, sh, &y0, &y1, &fy);
        const uint8_t *r0 = src + (size_t)y0 * (size_t)sw * (size_t)sc;
        const uint8_t *r1 = src + (size_t)y1 * (size_t)sw * (size_t)sc;
        for (int k = 0; k < t.c; k++) {
            int ch = sc == 1 ? 0 : k;
            uint8_t *o = out + (size_t)k * plane + (size_t)y * (size_t)t.w;
            for (int x = 0; x < t.w; x++) {
                size_t a = (size_t)x0[x] * (size_t)sc + (size_t)ch;
                size_t b = (size_t)x1[x] * (size_t)sc + (size_t)ch;
                float top = (float)r0[a] + ((float)r0[b] - (float)r0[a]) * fx[x];
                float bot = (float)r1[a] + ((float)r1[b] - (float)r1[a]) * fx[x];
                float v = top + (bot - top) * fy + 0.5f;
                o[x] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
            }
        }
    }
    free(x0);
    free(fx);
    return 0;
}

/* Converts im to t.c channels and resizes it bilinearly into out, (t.c, t.h, t.w) planar. */
static int image_to_sample(const struct image *im, struct ud_shape t, uint8_t *out)
{
    const uint8_t *src = im->px;
    uint8_t *grey = NULL;
    int sc = im->c;
    if (t.c == 1 && im->c == 3) {
        size_t np = (size_t)im->w * (size_t)im->h;
        grey = malloc(np);
        if (!grey)
            return UD_ENOMEM;
        for (size_t p = 0; p < np; p++) {
            const uint8_t *q = im->px + 3 * p;
            grey[p] = (uint8_t)((299u * q[0] + 587u * q[1] + 114u * q[2] + 500u) / 1000u);
        }
        src = grey;
        sc = 1;
    }
    int rc = 0;
    if (im->w == t.w && im->h == t.h) {
        size_t plane = (size_t)t.h * (size_t)t.w;
        for (int k = 0; k < t.c; k++) {
            int ch = sc == 1 ? 0 : k;
            uint8_t *o = out + (size_t)k * plane;
            for (size_t p = 0; p < plane; p++)
                o[p] = src[p * (size_t)sc + (size_t)ch];
        }
    } else {
        rc = resize_bilinear(src, im->w, im->h, sc, t, out);
    }
    free(grey);
    return rc;
}

/* ---- Listing the tree ---- */

struct names {
    char **v;
    size_t n, cap;
};

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int names_push(struct names *s, const char *name)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return UD_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(name)))
        return UD_ENOMEM;
    s->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name &&
           (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
            strcasecmp(dot, ".jpeg") == 0);
}

/* Lists the non-hidden entries of dir that are directories (want_dirs) or image files, sorted. */
static int list_dir(const char *dir, int want_dirs, struct names *out, struct ud_err *e)
{
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ud__data_errno(e, errno, "open the directory", dir);
    struct dirent *ent;
    for (;;) {
        errno = 0;
        ent = readdir(d);
        if (!ent) {
            if (errno)
                rc = ud__data_errno(e, errno, "read the directory", dir);
            break;
        }
        if (ent->d_name[0] == '.')
            continue;
        if (!want_dirs && !is_image_name(ent->d_name))
            continue;
        char *p = ud__path_join(dir, ent->d_name);
        if (!p) {
            rc = ud_err_set(e, UD_ENOMEM, "out of memory listing %s", dir);
            break;
        }
        struct stat st;
        int ok = stat(p, &st) == 0 && (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        free(p);
        if (ok && names_push(out, ent->d_name)) {
            rc = ud_err_set(e, UD_ENOMEM, "out of memory listing %s", dir);
            break;
        }
    }
    closedir(d);
    if (rc == 0 && out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return rc;
}

/* ---- Class folder names ---- */

/* Undoes ud_class_dir_name in place: "%2F" -> '/', "%25" -> '%', a leading "%2E" -> '.'. */
static void class_dir_decode(char *s)
{
    char *o = s;
    for (const char *p = s; *p;) {
        if (p[0] == '%' && p[1] == '2' && (p[2] == 'F' || p[2] == '5' || (p[2] == 'E' && p == s))) {
            *o++ = p[2] == 'F' ? '/' : p[2] == '5' ? '%' : '.';
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

char *ud_class_dir_name(const char *name)
{
    size_t n = strlen(name);
    char *s = malloc(3 * n + 1);
    if (!s)
        return NULL;
    char *o = s;
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '/' || name[i] == '%' || (i == 0 && name[i] == '.')) {
            *o++ = '%';
            *o++ = '2';
            *o++ = name[i] == '/' ? 'F' : name[i] == '%' ? '5' : 'E';
        } else {
            *o++ = name[i];
        }
    }
    *o = '\0';
    return s;
}

/* ---- The loader ---- */

struct file_ref {
    char *path;
    int cls;
};

/* One ud_dataset_load_images call: the tree as listed, then the dataset as it fills. Every step
 * below returns 0 or a UD_E* code with e set, and leaves what it made here for load_free. */
struct image_load {
    const char *dir;
    const struct ud_load_opts *opts;
    struct ud_shape t;      /* the target shape; zeros until the first good image when not given */
    int have_shape;         /* t was given by the caller */
    struct names cls;       /* class folder names, sorted */
    size_t *cls_files;      /* per class: image files listed */
    size_t *cls_tried;      /* per class: files decoded so far */
    size_t *cls_good;       /* per class: samples kept */
    struct file_ref *files; /* every image file, in the order it is loaded */
    size_t nfiles, capfiles;
    size_t cap; /* samples wanted: nfiles, or fewer under max_samples */
    ud_dataset_t *ds;
    struct ud__sbuf src; /* the samples' source paths */
};

static void load_free(struct image_load *L)
{
    ud_dataset_destroy(&L->ds);
    free(L->src.p);
    for (size_t f = 0; f < L->nfiles; f++)
        free(L->files[f].path);
    free(L->files);
    names_free(&L->cls);
    free(L->cls_files);
    free(L->cls_tried);
    free(L->cls_good);
}

/* The class folders of dir, sorted, and the per-class counters. */
static int list_classes(struct image_load *L, struct ud_err *e)
{
    int rc = list_dir(L->dir, 1, &L->cls, e);
    if (rc)
        return rc;
    if (L->cls.n == 0)
        return ud_err_set(e, UD_EEMPTY, "%s: no class folders (expected %s/<class>/*.png|*.jpg)",
                          L->dir, L->dir);
    if (L->cls.n > UD_MAX_CLASSES)
        return ud_err_set(e, UD_ELIMIT, "%s: %zu class folders, over the limit of %d", L->dir,
                          L->cls.n, UD_MAX_CLASSES);
    L->cls_files = calloc(L->cls.n, sizeof *L->cls_files);
    L->cls_tried = calloc(L->cls.n, sizeof *L->cls_tried);
    L->cls_good = calloc(L->cls.n, sizeof *L->cls_good);
    if (!L->cls_files || !L->cls_tried || !L->cls_good)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    return 0;
}

/* Appends the image files fn of class c (folder cdir) to L->files. */
static int add_class_files(struct image_load *L, size_t c, const char *cdir, const struct names *fn,
                           struct ud_err *e)
{
    if (L->nfiles + fn->n > UD_DATA_MAX_SAMPLES)
        return ud_err_set(e, UD_ELIMIT, "%s: more than %zu images", L->dir,
                          (size_t)UD_DATA_MAX_SAMPLES);
    if (L->nfiles + fn->n > L->capfiles) {
        size_t cap = L->capfiles ? L->capfiles : 64;
        while (cap < L->nfiles + fn->n)
            cap *= 2;
        struct file_ref *nf = realloc(L->files, cap * sizeof *nf);
        if (!nf)
            return ud_err_set(e, UD_ENOMEM, "out of memory listing %s", cdir);
        L->files = nf;
        L->capfiles = cap;
    }
    for (size_t k = 0; k < fn->n; k++) {
        char *p = ud__path_join(cdir, fn->v[k]);
        if (!p)
            return ud_err_set(e, UD_ENOMEM, "out of memory listing %s", cdir);
        L->files[L->nfiles].path = p;
        L->files[L->nfiles].cls = (int)c;
        L->nfiles++;
    }
    return 0;
}

/* Lists every image file, class by class: an empty class folder fails (unless skip_bad) before
 * anything is decoded. */
static int list_files(struct image_load *L, struct ud_err *e)
{
    for (size_t c = 0; c < L->cls.n; c++) {
        struct names fn = {0};
        char *cdir = ud__path_join(L->dir, L->cls.v[c]);
        if (!cdir)
            return ud_err_set(e, UD_ENOMEM, "out of memory");
        int rc = list_dir(cdir, 0, &fn, e);
        if (rc == 0 && fn.n == 0 && !L->opts->skip_bad)
            rc = ud_err_set(e, UD_EEMPTY, "%s: empty class folder (no .png, .jpg or .jpeg images)",
                            cdir);
        if (rc == 0)
            rc = add_class_files(L, c, cdir, &fn, e);
        L->cls_files[c] = fn.n;
        names_free(&fn);
        free(cdir);
        if (rc)
            return rc;
    }
    return 0;
}

/* Under max_samples, keeps every class in the subset: reorders the files round-robin across
 * classes (each class in its sorted order), so the first max_samples are spread over all. */
static int interleave_classes(struct image_load *L, struct ud_err *e)
{
    size_t nc = L->cls.n;
    struct file_ref *rr = malloc(L->nfiles * sizeof *rr);
    size_t *next = calloc(nc, sizeof *next), *start = calloc(nc, sizeof *start);
    if (!rr || !next || !start) {
        free(rr);
        free(next);
        free(start);
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    }
    for (size_t c = 1; c < nc; c++)
        start[c] = start[c - 1] + L->cls_files[c - 1];
    for (size_t out = 0; out < L->nfiles;)
        for (size_t c = 0; c < nc; c++)
            if (next[c] < L->cls_files[c])
                rr[out++] = L->files[start[c] + next[c]++];
    free(L->files);
    L->files = rr;
    free(next);
    free(start);
    return 0;
}

/* The dataset shell for up to L->cap samples; the pixels wait for the first good image. */
static int alloc_dataset(struct image_load *L, struct ud_err *e)
{
    size_t cnt = L->cap ? L->cap : 1;
    if (!(L->ds = ud__dataset_alloc(e)))
        return UD_ENOMEM;
    L->ds->u8 = 1;
    L->ds->label = malloc(cnt * sizeof *L->ds->label);
    L->ds->src_off = malloc(cnt * sizeof *L->ds->src_off);
    if (!L->ds->label || !L->ds->src_off)
        return ud_err_set(e, UD_ENOMEM, "out of memory for %zu samples", L->cap);
    return 0;
}

/* The first good image (im, from path) fixes the sample shape when none was asked for; the
 * pixels of all L->cap samples are allocated then. */
static int alloc_pixels(struct image_load *L, const struct image *im, const char *path,
                        struct ud_err *e)
{
    struct ud_shape t = L->t;
    if (!L->have_shape) {
        if (im->w > UD_MAX_DIM || im->h > UD_MAX_DIM)
            return ud_err_set(e, UD_ELIMIT,
                              "%s: the first image is %d x %d, over %d a side; give a target shape",
                              path, im->w, im->h, UD_MAX_DIM);
        t = L->t = (struct ud_shape){im->c, im->h, im->w};
    }
    ud_dataset_t *ds = L->ds;
    ds->shape = t;
    ds->isize = ud_shape_size(t);
    if ((uint64_t)L->cap * ds->isize > UD_DATA_MAX_BYTES)
        return ud_err_set(e, UD_ELIMIT, "%s: %zu images of %d x %d x %d are over the limit", L->dir,
                          L->cap, t.c, t.h, t.w);
    ds->px = malloc(L->cap * ds->isize);
    if (!ds->px)
        return ud_err_set(e, UD_ENOMEM, "out of memory for %zu images of %d x %d x %d", L->cap, t.c,
                          t.h, t.w);
    return 0;
}

/* Decodes file f into sample ds->n. A bad file fails, or under skip_bad is counted, reported
 * and left out. */
static int load_file(struct image_load *L, size_t f, struct ud_err *e)
{
    ud_dataset_t *ds = L->ds;
    const char *path = L->files[f].path;
    int c = L->files[f].cls;
    struct image im = {0};
    char msg[UD_ERRMSG_MAX];
    struct ud_err fe = {0};
    L->cls_tried[c]++;
    int rc = image_decode_file(path, &im, msg, sizeof msg, &fe);
    if (rc == 0 && !ds->px) {
        int ar = alloc_pixels(L, &im, path, e);
        if (ar) {
            free(im.px);
            return ar;
        }
    }
    if (rc == 0)
        rc = image_to_sample(&im, L->t, ds->px + ds->n * ds->isize);
    free(im.px);
    if (rc == UD_ENOMEM)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory decoding", path);
    if (rc) {
        if (!L->opts->skip_bad)
            return ud_err_set(e, rc, "%s: %s", path, msg);
        ud__data_warn(L->opts, "%s: %s; skipped", path, msg);
        ds->skipped++;
        return 0;
    }
    if (ud__sbuf_add(&L->src, path, &ds->src_off[ds->n]))
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    ds->label[ds->n++] = c;
    L->cls_good[c]++;
    return 0;
}

/* Decodes the files in order until L->cap samples are kept or the files run out. */
static int load_files(struct image_load *L, struct ud_err *e)
{
    for (size_t f = 0; f < L->nfiles && L->ds->n < L->cap; f++) {
        int rc = load_file(L, f, e);
        if (rc)
            return rc;
    }
    if (L->ds->n == 0)
        return ud_err_set(e, UD_EEMPTY, "%s: no usable images (%zu skipped)", L->dir,
                          L->ds->skipped);
    return 0;
}

/* The dataset's classes: the folder names decoded, less (under skip_bad) the classes that gave
 * nothing though all of their files were tried; labels renumbered to match. */
static int set_classes(struct image_load *L, struct ud_err *e)
{
    ud_dataset_t *ds = L->ds;
    int *remap = calloc(L->cls.n, sizeof *remap);
    if (!remap)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    int k = 0;
    for (size_t c = 0; c < L->cls.n; c++) {
        if (L->cls_good[c] == 0 && L->cls_tried[c] == L->cls_files[c]) {
            char *cdir = ud__path_join(L->dir, L->cls.v[c]);
            ud__data_warn(L->opts, "%s: %s; class \"%s\" left out", cdir ? cdir : L->cls.v[c],
                          L->cls_files[c] ? "no usable images" : "empty class folder", L->cls.v[c]);
            free(cdir);
            remap[c] = -1;
            continue;
        }
        remap[c] = k++;
    }
    for (size_t i = 0; i < ds->n; i++)
        ds->label[i] = remap[ds->label[i]];
    ds->classes = calloc((size_t)k, sizeof *ds->classes);
    if (!ds->classes) {
        free(remap);
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    }
    for (size_t c = 0; c < L->cls.n; c++) {
        if (remap[c] >= 0) {
            class_dir_decode(L->cls.v[c]);
            ds->classes[remap[c]] = L->cls.v[c]; /* moved */
            L->cls.v[c] = NULL;
        }
    }
    free(remap);
    ds->nclasses = k;
    for (int a = 0; a < k; a++)
        for (int b = a + 1; b < k; b++)
            if (strcmp(ds->classes[a], ds->classes[b]) == 0)
                return ud_err_set(e, UD_EINVAL, "%s: two class folders both name the class \"%s\"",
                                  L->dir, ds->classes[a]);
    return 0;
}

ud_dataset_t *ud_dataset_load_images(const char *dir, const struct ud_load_opts *opts,
                                     struct ud_err *e)
{
    static const struct ud_load_opts no_opts;
    struct image_load L = {.dir = dir, .opts = opts ? opts : &no_opts};
    struct ud_shape t = L.t = L.opts->shape;
    L.have_shape = !(t.c == 0 && t.h == 0 && t.w == 0);
    if (L.have_shape && (!(t.c == 1 || t.c == 3) || !ud__shape_valid(t))) {
        ud_err_set(e, UD_ESHAPE,
                   "%s: cannot load images as (%d, %d, %d): need 1 or 3 channels and sides in "
                   "1..%d (does the model take images?)",
                   dir, t.c, t.h, t.w, UD_MAX_DIM);
        return NULL;
    }
    if (list_classes(&L, e) || list_files(&L, e))
        goto out_free;
    L.cap = L.nfiles;
    if (L.opts->max_samples && L.opts->max_samples < L.cap) {
        L.cap = L.opts->max_samples;
        if (interleave_classes(&L, e))
            goto out_free;
    }
    if (alloc_dataset(&L, e) || load_files(&L, e) || set_classes(&L, e))
        goto out_free;

    ud_dataset_t *ds = L.ds;
    if (ds->n < L.cap) { /* some were skipped: give back the unused tail */
        uint8_t *px = realloc(ds->px, ds->n * ds->isize);
        if (px)
            ds->px = px;
    }
    ds->src_pool = L.src.p;
    L.src.p = NULL;
    L.ds = NULL; /* handed over: load_free frees only the scratch */
    load_free(&L);
    return ds;

out_free:
    load_free(&L);
    return NULL;
}

/* ---- One image at a time ---- */

int ud__image_decode_mem(const void *data, size_t len, struct ud_shape shape, uint8_t *out,
                         char *msg, size_t msz)
{
    if (!(shape.c == 1 || shape.c == 3) || !ud__shape_valid(shape)) {
        snprintf(msg, msz, "cannot load an image as (%d, %d, %d)", shape.c, shape.h, shape.w);
        return UD_ESHAPE;
    }
    if (len > UD_DATA_MAX_IMAGE_FILE) {
        snprintf(msg, msz, "%zu bytes, over the limit of %zu for an image file", len,
                 UD_DATA_MAX_IMAGE_FILE);
        return UD_ELIMIT;
    }
    struct image im = {0};
    int rc = image_decode(data, len, &im, msg, msz);
    if (rc)
        return rc;
    rc = image_to_sample(&im, shape, out);
    free(im.px);
    if (rc)
        snprintf(msg, msz, "out of memory decoding");
    return rc;
}

int ud_image_load(const char *path, struct ud_shape shape, float *x, struct ud_err *e)
{
    if (!(shape.c == 1 || shape.c == 3) || !ud__shape_valid(shape))
        return ud_err_set(e, UD_ESHAPE,
                          "%s: cannot load an image as (%d, %d, %d): need 1 or 3 channels and "
                          "sides in 1..%d",
                          path, shape.c, shape.h, shape.w, UD_MAX_DIM);
    char *data;
    size_t len;
    int rc = ud__data_read_file(path, UD_DATA_MAX_IMAGE_FILE, &data, &len, e);
    if (rc)
        return rc; /* the message names path */
    size_t m = ud_shape_size(shape);
    uint8_t *px = malloc(m);
    char msg[UD_ERRMSG_MAX] = "out of memory decoding";
    rc = px ? ud__image_decode_mem(data, len, shape, px, msg, sizeof msg) : UD_ENOMEM;
    free(data);
    if (rc) {
        free(px);
        return ud_err_set(e, rc, "%s: %s", path, msg);
    }
    const float s = 1.0f / 255.0f;
    for (size_t k = 0; k < m; k++)
        x[k] = (float)px[k] * s;
    free(px);
    return 0;
}
