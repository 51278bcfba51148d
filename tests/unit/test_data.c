/*  test_data.c — the data module: datasets, provider, class mapping, splits, and the three
 *  loaders (image folders, IDX, CSV) against fixtures written here at test time with libpng,
 *  libjpeg, zlib and plain stdio, plus the real Fashion-MNIST test set when it is installed.
 */
#include "ud_test.h"

#ifdef __GLIBC__
#include <malloc.h> /* mallinfo2: how much the real Fashion-MNIST test set takes */
#endif
#include <math.h>
#include <time.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "updraft/ud_data.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- Fixture helpers ---- */

static void mkdirs(const char *rel)
{
    ud_test_mkdirs(ud_test_path(rel));
}

/* Writes a PNG: rows in the PNG's own layout (16-bit samples big-endian). */
static void write_png_ex(const char *rel, int w, int h, int color_type, int depth,
                         const uint8_t *data, const png_color *pal, int npal, int interlace)
{
    FILE *f = fopen(ud_test_path(rel), "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing %s", rel);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal)
        png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    int ch = color_type == PNG_COLOR_TYPE_RGB          ? 3
             : color_type == PNG_COLOR_TYPE_RGBA       ? 4
             : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                       : 1;
    size_t rowbytes = ((size_t)w * (size_t)ch * (size_t)depth + 7) / 8;
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)data + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

/* 8-bit grey (c = 1) or RGB (c = 3), (h, w, c) interleaved. */
static void write_png(const char *rel, int w, int h, int c, const uint8_t *data)
{
    write_png_ex(rel, w, h, c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, 8, data, NULL, 0, 0);
}

static void write_jpeg(const char *rel, int w, int h, int c, const uint8_t *data, int quality)
{
    FILE *f = fopen(ud_test_path(rel), "wb");
    assert_non_null(f);
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)data + (size_t)ci.next_scanline * (size_t)w * (size_t)c;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX file: magic, dims, then data; gz: through gzwrite. Returns the full path. */
static const char *write_idx(const char *rel, int gz, uint32_t magic, const uint32_t *dims,
                             int ndims, const uint8_t *data, size_t len)
{
    uint8_t hdr[4 + 4 * 4];
    put_be32(hdr, magic);
    for (int i = 0; i < ndims; i++)
        put_be32(hdr + 4 + 4 * i, dims[i]);
    const char *path = ud_test_path(rel);
    size_t hl = 4 + 4 * (size_t)ndims;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, hdr, (unsigned)hl), (int)hl);
        if (len)
            assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(hdr, 1, hl, f), hl);
        if (len)
            assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);
    }
    return path;
}

static const char *write_text(const char *rel, const char *text)
{
    return ud_test_write(rel, text, strlen(text));
}

struct warns {
    int n;
    char all[4096];
};

static void on_warn(void *user, const char *msg)
{
    struct warns *w = user;
    w->n++;
    size_t l = strlen(w->all);
    snprintf(w->all + l, sizeof w->all - l, "%s\n", msg);
}

/* ---- Programmatic datasets ---- */

static void test_new_set_get(void **state)
{
    struct ud_err e = {0};
    const char *cls[] = {"a", "b"};
    ud_dataset_t *ds = ud_dataset_new(3, (struct ud_shape){1, 1, 2}, 1, cls, 2, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_count(ds), 3);
    assert_int_equal(ud_dataset_input_size(ds), 2);
    assert_int_equal(ud_dataset_num_classes(ds), 2);
    assert_string_equal(ud_dataset_class_name(ds, 1), "b");
    assert_null(ud_dataset_class_name(ds, 2));
    uint8_t px[2] = {0, 255};
    assert_int_equal(ud_dataset_set_u8(ds, 2, px, 1), 0);
    assert_int_equal(ud_dataset_set_u8(ds, 3, px, 1), UD_ERANGE);
    assert_int_equal(ud_dataset_set_u8(ds, 0, px, 2), UD_ERANGE);
    assert_int_equal(ud_dataset_set_u8(ds, 0, px, -1), UD_ERANGE);
    float fx[2] = {0.5f, 0.25f};
    assert_int_equal(ud_dataset_set_f32(ds, 0, fx, 0), UD_EINVAL);
    float x[2] = {-1, -1};
    assert_int_equal(ud_dataset_get(ds, 2, x), 0);
    assert_true(x[0] == 0.0f && x[1] == 1.0f);
    px[0] = 51;
    ud_dataset_set_u8(ds, 1, px, 0);
    ud_dataset_get(ds, 1, x);
    assert_near(x[0], 0.2f, 1e-7f);
    assert_int_equal(ud_dataset_label(ds, 2), 1);
    assert_int_equal(ud_dataset_label(ds, 3), -1);
    assert_int_equal(ud_dataset_get(ds, 3, x), UD_ERANGE);
    assert_int_equal(ud_dataset_skipped(ds), 0);
    assert_null(ud_dataset_source(ds, 0));
    ud_dataset_destroy(&ds);
    assert_null(ds);
    ud_dataset_destroy(&ds); /* NULL is fine */

    /* Floats, default class names. */
    ds = ud_dataset_new(1, (struct ud_shape){3, 1, 1}, 0, NULL, 3, &e);
    assert_non_null(ds);
    assert_string_equal(ud_dataset_class_name(ds, 2), "2");
    float v[3] = {1.5f, -2.0f, 3.0f};
    assert_int_equal(ud_dataset_set_f32(ds, 0, v, 2), 0);
    float got[3];
    ud_dataset_get(ds, 0, got);
    assert_memory_equal(got, v, sizeof v);
    v[1] = NAN;
    assert_int_equal(ud_dataset_set_f32(ds, 0, v, 2), UD_ENONFINITE);
    assert_int_equal(ud_dataset_set_u8(ds, 0, px, 0), UD_EINVAL);
    ud_dataset_destroy(&ds);

    /* Bad arguments. */
    const char *dup[] = {"x", "y", "x"};
    assert_null(ud_dataset_new(1, (struct ud_shape){1, 1, 1}, 1, dup, 3, &e));
    assert_int_equal(e.code, UD_EINVAL);
    assert_msg_has(&e, "\"x\"");
    assert_null(ud_dataset_new(1, (struct ud_shape){0, 1, 1}, 1, NULL, 2, &e));
    assert_int_equal(e.code, UD_ESHAPE);
    assert_null(ud_dataset_new(1, (struct ud_shape){1, 1, 1}, 1, NULL, 0, &e));
    assert_int_equal(e.code, UD_ERANGE);
}

static ud_dataset_t *abc_dataset(void)
{
    const char *cls[] = {"a", "b", "c"};
    ud_dataset_t *ds = ud_dataset_new(4, (struct ud_shape){1, 1, 1}, 1, cls, 3, NULL);
    assert_non_null(ds);
    const int32_t lab[4] = {0, 1, 2, 1};
    for (int i = 0; i < 4; i++) {
        uint8_t p = (uint8_t)(10 * i);
        assert_int_equal(ud_dataset_set_u8(ds, (size_t)i, &p, lab[i]), 0);
    }
    return ds;
}

static void test_map_classes(void **state)
{
    struct ud_err e = {0};
    ud_dataset_t *ds = abc_dataset();
    const char *to[] = {"c", "a", "b", "z"};
    assert_int_equal(ud_dataset_map_classes(ds, to, 4, &e), 0);
    assert_int_equal(ud_dataset_num_classes(ds), 4);
    const int32_t want[4] = {1, 2, 0, 2};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ud_dataset_label(ds, i), want[i]);
    assert_string_equal(ud_dataset_class_name(ds, 0), "c");
    assert_string_equal(ud_dataset_class_name(ds, 3), "z");

    /* A class of the data missing from the list: refused, dataset unchanged. */
    const char *missing[] = {"a", "b", "z"};
    assert_int_equal(ud_dataset_map_classes(ds, missing, 3, &e), UD_ENOTFOUND);
    assert_msg_has(&e, "\"c\"");
    assert_int_equal(ud_dataset_num_classes(ds), 4);
    assert_int_equal(ud_dataset_label(ds, 0), 1);
    const char *dup[] = {"a", "b", "c", "a"};
    assert_int_equal(ud_dataset_map_classes(ds, dup, 4, &e), UD_EINVAL);
    assert_int_equal(ud_dataset_label(ds, 2), 0);
    ud_dataset_destroy(&ds);
}

static void test_provider(void **state)
{
    struct ud_err e = {0};
    ud_dataset_t *ds = abc_dataset();
    struct ud_batch_provider all, sub, sub2, bad;
    ud_dataset_provider(ds, NULL, 0, &all);
    assert_int_equal(ud_batch_provider_count(&all), 4);
    float x;
    int32_t lab = -1;
    assert_int_equal(ud_batch_provider_get(&all, 3, &x, &lab, &e), 0);
    assert_int_equal(lab, 1);
    assert_near(x, 30.0f / 255.0f, 1e-7f);
    ud_err_clear(&e);
    assert_int_equal(ud_batch_provider_get(&all, 4, &x, &lab, &e), UD_ERANGE);
    assert_int_equal(e.code, UD_ERANGE);
    assert_msg_has(&e, "4");

    const uint32_t idx[2] = {2, 0}, idx2[1] = {1}, idx_bad[1] = {7};
    ud_dataset_provider(ds, idx, 2, &sub);
    ud_dataset_provider(ds, idx2, 1, &sub2);
    ud_dataset_provider(ds, idx_bad, 1, &bad);
    assert_int_equal(ud_batch_provider_count(&sub), 2);
    assert_int_equal(ud_batch_provider_count(&sub2), 1);
    assert_int_equal(ud_batch_provider_get(&sub, 0, &x, &lab, &e), 0);
    assert_int_equal(lab, 2);
    assert_near(x, 20.0f / 255.0f, 1e-7f);
    assert_int_equal(ud_batch_provider_get(&sub, 1, &x, &lab, &e), 0);
    assert_int_equal(lab, 0);
    assert_int_equal(ud_batch_provider_get(&sub2, 0, &x, &lab, &e), 0);
    assert_int_equal(lab, 1);
    ud_err_clear(&e);
    assert_int_equal(ud_batch_provider_get(&sub, 2, &x, &lab, &e), UD_ERANGE);
    assert_true(e.msg[0] != '\0');
    assert_int_equal(ud_batch_provider_get(&sub2, (size_t)-1, &x, &lab, &e), UD_ERANGE);
    assert_int_equal(ud_batch_provider_get(&bad, 0, &x, &lab, &e), UD_ERANGE);
    assert_msg_has(&e, "7");
    ud_dataset_destroy(&ds); /* frees the providers' state: valgrind checks */
}

/* ---- Splits ---- */

/* Marks idx[0..m) in seen, which must hold each once, ascending and below n. */
static void check_indices(size_t n, const uint32_t *idx, size_t m, unsigned char *seen)
{
    for (size_t i = 0; i < m; i++) {
        assert_true(idx[i] < n);
        assert_false(seen[idx[i]]);
        seen[idx[i]] = 1;
        if (i)
            assert_true(idx[i - 1] < idx[i]);
    }
}

/* The training and validation indices are disjoint, ascending and cover 0..n-1. */
static void check_split(size_t n, const uint32_t *tr, size_t ntr, const uint32_t *va, size_t nva)
{
    assert_int_equal(ntr + nva, n);
    unsigned char *seen = calloc(n ? n : 1, 1);
    check_indices(n, tr, ntr, seen);
    check_indices(n, va, nva, seen);
    free(seen);
}

/* Splits n samples with s, checks the split (check_split; no validation array when it is
 * empty) and returns how many samples went to validation. */
static size_t split_checked(size_t n, const struct ud_split *s)
{
    struct ud_err e = {0};
    uint32_t *tr, *va;
    size_t ntr, nva;
    assert_int_equal(ud_split_indices(n, s, &tr, &ntr, &va, &nva, &e), 0);
    assert_non_null(tr);
    if (nva == 0)
        assert_null(va);
    check_split(n, tr, ntr, va, nva);
    free(tr);
    free(va);
    return nva;
}

static void test_split_automatic(void **state)
{
    assert_true(ud_split_automatic_ratio(0) == 0.0);
    assert_true(ud_split_automatic_ratio(49) == 0.0);
    assert_true(ud_split_automatic_ratio(50) == 0.10);
    assert_true(ud_split_automatic_ratio(199) == 0.10);
    assert_true(ud_split_automatic_ratio(200) == 0.05);
    assert_true(ud_split_automatic_ratio(1000) == 0.05);
    const size_t ns[] = {49, 50, 199, 200, 1000};
    const size_t want[] = {0, 5, 20, 10, 50};
    const struct ud_split s = {.kind = UD_SPLIT_AUTOMATIC, .seed = 42};
    for (int k = 0; k < 5; k++)
        assert_int_equal(split_checked(ns[k], &s), want[k]);
}

static void test_split_fixed(void **state)
{
    struct ud_err e = {0};
    struct ud_split s = {.kind = UD_SPLIT_FIXED, .ratio = 0.3, .seed = 7};
    uint32_t *tr1, *va1, *tr2, *va2, *tr3, *va3;
    size_t ntr1, nva1, ntr2, nva2, ntr3, nva3;
    assert_int_equal(ud_split_indices(100, &s, &tr1, &ntr1, &va1, &nva1, &e), 0);
    assert_int_equal(nva1, 30);
    check_split(100, tr1, ntr1, va1, nva1);
    assert_int_equal(ud_split_indices(100, &s, &tr2, &ntr2, &va2, &nva2, &e), 0);
    assert_int_equal(nva2, 30);
    assert_memory_equal(va1, va2, 30 * sizeof *va1); /* same seed, same split */
    assert_memory_equal(tr1, tr2, 70 * sizeof *tr1);
    s.seed = 8;
    assert_int_equal(ud_split_indices(100, &s, &tr3, &ntr3, &va3, &nva3, &e), 0);
    assert_int_equal(nva3, 30);
    assert_true(memcmp(va1, va3, 30 * sizeof *va1) != 0); /* another seed, another split */
    /* Not simply the first or last 30. */
    assert_false(va1[0] == 0 && va1[29] == 29);
    assert_false(va1[0] == 70 && va1[29] == 99);
    free(tr1);
    free(va1);
    free(tr2);
    free(va2);
    free(tr3);
    free(va3);

    /* Rounding, the ends of the range, and none. */
    uint32_t *tr, *va;
    size_t ntr, nva;
    s.ratio = 0.25;
    assert_int_equal(split_checked(10, &s), 3); /* round(2.5) */
    s.ratio = 1.0;
    assert_int_equal(split_checked(10, &s), 10); /* and no training sample */
    s.ratio = 0.0;
    assert_int_equal(split_checked(10, &s), 0);
    struct ud_split none = {.kind = UD_SPLIT_NONE};
    assert_int_equal(split_checked(1000, &none), 0);
    const double bad[] = {-0.1, 1.5, NAN};
    for (int k = 0; k < 3; k++) {
        s.ratio = bad[k];
        ud_err_clear(&e);
        assert_int_equal(ud_split_indices(10, &s, &tr, &ntr, &va, &nva, &e), UD_ERANGE);
        assert_int_equal(e.code, UD_ERANGE);
        assert_null(tr);
        assert_null(va);
    }
}

/* ---- Image folders ---- */

/* img/: classes created out of order; hidden and non-image files that would fail if read. */
static void make_image_tree(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    mkdirs("img/dog");
    mkdirs("img/ant");
    mkdirs("img/cat");
    mkdirs("img/.hidden");
    const uint8_t g2[4] = {0, 255, 0, 255}; /* 2 x 2: a vertical edge */
    write_png("img/ant/a.png", 2, 2, 1, g2);
    uint8_t red[27];
    for (int i = 0; i < 9; i++) {
        red[3 * i] = 255;
        red[3 * i + 1] = 0;
        red[3 * i + 2] = 0;
    }
    write_png("img/ant/b.PNG", 3, 3, 3, red); /* upper-case extension */
    write_text("img/ant/.hidden.png", "not an image");
    write_text("img/ant/notes.txt", "not an image");
    write_text("img/readme.png", "a file at the top is not a class");
    write_text("img/.hidden/x.png", "not an image");
    uint8_t g8[64];
    memset(g8, 100, sizeof g8);
    write_jpeg("img/cat/c.jpg", 8, 8, 1, g8, 95);
    uint8_t grad[16], flat[16];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            grad[y * 4 + x] = (uint8_t)(x * 10 + y);
    memset(flat, 7, sizeof flat);
    write_png("img/dog/z.png", 4, 4, 1, grad);
    write_png("img/dog/a.png", 4, 4, 1, flat);
}

static void test_images_load(void **state)
{
    struct ud_err e = {0};
    make_image_tree();
    struct ud_load_opts o = {.shape = {1, 4, 4}};
    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path("img"), &o, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    assert_int_equal(ud_dataset_count(ds), 5);
    assert_int_equal(ud_dataset_num_classes(ds), 3);
    assert_string_equal(ud_dataset_class_name(ds, 0), "ant");
    assert_string_equal(ud_dataset_class_name(ds, 1), "cat");
    assert_string_equal(ud_dataset_class_name(ds, 2), "dog");
    const int32_t lab[5] = {0, 0, 1, 2, 2};
    const char *src[5] = {"/ant/a.png", "/ant/b.PNG", "/cat/c.jpg", "/dog/a.png", "/dog/z.png"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(ud_dataset_label(ds, i), lab[i]);
        const char *s = ud_dataset_source(ds, i);
        assert_non_null(s);
        assert_non_null(strstr(s, src[i]));
    }
    struct ud_shape sh = ud_dataset_shape(ds);
    assert_true(sh.c == 1 && sh.h == 4 && sh.w == 4);
    float x[16];
    /* 2 x 2 edge upsampled to 4 x 4 with half-pixel centres: 0, 63.75, 191.25, 255. */
    ud_dataset_get(ds, 0, x);
    const float row[4] = {0, 64, 191, 255};
    for (int y = 0; y < 4; y++)
        for (int c = 0; c < 4; c++)
            assert_near(x[y * 4 + c], row[c] / 255.0f, 1e-6f);
    /* Pure red to grey: 0.299 * 255 = 76.2. */
    ud_dataset_get(ds, 1, x);
    for (int k = 0; k < 16; k++)
        assert_near(x[k], 76.0f / 255.0f, 1e-6f);
    /* A flat JPEG stays flat (lossy: within a couple of levels). */
    ud_dataset_get(ds, 2, x);
    for (int k = 0; k < 16; k++)
        assert_near(x[k], 100.0f / 255.0f, 2.5f / 255.0f);
    /* Same size: pixels copied exactly. */
    ud_dataset_get(ds, 4, x);
    for (int y = 0; y < 4; y++)
        for (int c = 0; c < 4; c++)
            assert_near(x[y * 4 + c], (float)(c * 10 + y) / 255.0f, 1e-6f);
    ud_dataset_destroy(&ds);

    /* Downsampling 4 x 4 to 2 x 2 samples at the centres of 2 x 2 blocks: the block means. */
    o.shape = (struct ud_shape){1, 2, 2};
    ds = ud_dataset_load_images(ud_test_path("img"), &o, &e);
    assert_non_null(ds);
    ud_dataset_get(ds, 4, x);
    assert_near(x[0], 5.5f / 255.0f, 0.6f / 255.0f);  /* (0 + 10 + 1 + 11) / 4 */
    assert_near(x[3], 27.5f / 255.0f, 0.6f / 255.0f); /* (22 + 32 + 23 + 33) / 4 */
    ud_dataset_destroy(&ds);
}

static void test_images_shape_and_channels(void **state)
{
    struct ud_err e = {0};
    make_image_tree();
    /* No target: the first image's, grey so one channel. */
    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path("img"), NULL, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    struct ud_shape sh = ud_dataset_shape(ds);
    assert_true(sh.c == 1 && sh.h == 2 && sh.w == 2);
    float x[12];
    ud_dataset_get(ds, 0, x);
    assert_true(x[0] == 0.0f && x[1] == 1.0f && x[2] == 0.0f && x[3] == 1.0f);
    ud_dataset_get(ds, 1, x); /* 3 x 3 RGB -> 2 x 2 grey */
    for (int k = 0; k < 4; k++)
        assert_near(x[k], 76.0f / 255.0f, 1e-6f);
    ud_dataset_destroy(&ds);

    /* RGB target: grey replicated, RGB kept per channel, planar (C, H, W). */
    struct ud_load_opts o = {.shape = {3, 2, 2}};
    ds = ud_dataset_load_images(ud_test_path("img"), &o, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_input_size(ds), 12);
    ud_dataset_get(ds, 0, x);
    for (int c = 0; c < 3; c++) {
        assert_true(x[c * 4 + 0] == 0.0f && x[c * 4 + 1] == 1.0f);
        assert_true(x[c * 4 + 2] == 0.0f && x[c * 4 + 3] == 1.0f);
    }
    ud_dataset_get(ds, 1, x);
    for (int k = 0; k < 4; k++) {
        assert_true(x[k] == 1.0f);
        assert_true(x[4 + k] == 0.0f && x[8 + k] == 0.0f);
    }
    ud_dataset_destroy(&ds);

    /* Bad target shapes. */
    o.shape = (struct ud_shape){2, 4, 4};
    assert_null(ud_dataset_load_images(ud_test_path("img"), &o, &e));
    assert_int_equal(e.code, UD_ESHAPE);
    o.shape = (struct ud_shape){1, 0, 4};
    assert_null(ud_dataset_load_images(ud_test_path("img"), &o, &e));
    assert_int_equal(e.code, UD_ESHAPE);
}

static void test_images_png_variants(void **state)
{
    struct ud_err e = {0};
    mkdirs("pngv/v");
    /* 16-bit grey, big-endian samples: 0, 65535, 0x8080, 0x1234 -> 0, 255, 128, 18. */
    const uint8_t g16[8] = {0x00, 0x00, 0xFF, 0xFF, 0x80, 0x80, 0x12, 0x34};
    write_png_ex("pngv/v/a_g16.png", 2, 2, PNG_COLOR_TYPE_GRAY, 16, g16, NULL, 0, 0);
    const png_color pal[2] = {{10, 20, 30}, {200, 100, 50}};
    const uint8_t pidx[4] = {0, 1, 1, 0};
    write_png_ex("pngv/v/b_pal.png", 2, 2, PNG_COLOR_TYPE_PALETTE, 8, pidx, pal, 2, 0);
    const uint8_t rgba[16] = {1, 2, 3, 0, 4, 5, 6, 255, 7, 8, 9, 128, 10, 11, 12, 1};
    write_png_ex("pngv/v/c_rgba.png", 2, 2, PNG_COLOR_TYPE_RGBA, 8, rgba, NULL, 0, 0);
    const uint8_t ga[8] = {40, 0, 50, 255, 60, 9, 70, 200};
    write_png_ex("pngv/v/d_ga.png", 2, 2, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, NULL, 0, 0);
    const uint8_t rgb[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    write_png_ex("pngv/v/e_inter.png", 2, 2, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0, 1);
    const uint8_t g1[2] = {0x40, 0x80}; /* 1-bit rows: 0 1 / 1 0 */
    write_png_ex("pngv/v/f_g1.png", 2, 2, PNG_COLOR_TYPE_GRAY, 1, g1, NULL, 0, 0);

    struct ud_load_opts o = {.shape = {3, 2, 2}};
    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path("pngv"), &o, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    assert_int_equal(ud_dataset_count(ds), 6);
    float x[12];
    uint8_t want[12];
#define CHECK_SAMPLE(i)                                                                            \
    do {                                                                                           \
        ud_dataset_get(ds, (i), x);                                                                \
        for (int k = 0; k < 12; k++)                                                               \
            assert_near(x[k] * 255.0f, (float)want[k], 1e-3f);                                     \
    } while (0)
    const uint8_t w16[4] = {0, 255, 128, 18};
    for (int c = 0; c < 3; c++)
        memcpy(want + 4 * c, w16, 4);
    CHECK_SAMPLE(0);
    for (int p = 0; p < 4; p++) {
        const png_color *q = &pal[pidx[p]];
        want[p] = q->red;
        want[4 + p] = q->green;
        want[8 + p] = q->blue;
    }
    CHECK_SAMPLE(1);
    for (int p = 0; p < 4; p++)
        for (int c = 0; c < 3; c++)
            want[4 * c + p] = rgba[4 * p + c]; /* alpha dropped, not blended */
    CHECK_SAMPLE(2);
    for (int p = 0; p < 4; p++)
        for (int c = 0; c < 3; c++)
            want[4 * c + p] = ga[2 * p];
    CHECK_SAMPLE(3);
    for (int p = 0; p < 4; p++)
        for (int c = 0; c < 3; c++)
            want[4 * c + p] = rgb[3 * p + c];
    CHECK_SAMPLE(4);
    const uint8_t w1[4] = {0, 255, 255, 0};
    for (int c = 0; c < 3; c++)
        memcpy(want + 4 * c, w1, 4);
    CHECK_SAMPLE(5);
#undef CHECK_SAMPLE
    ud_dataset_destroy(&ds);
}

static void test_images_jpeg(void **state)
{
    struct ud_err e = {0};
    mkdirs("jpg/red");
    mkdirs("jpg/grey");
    uint8_t rgb[16 * 16 * 3];
    for (int i = 0; i < 256; i++) {
        rgb[3 * i] = 200;
        rgb[3 * i + 1] = 50;
        rgb[3 * i + 2] = 10;
    }
    write_jpeg("jpg/red/a.jpeg", 16, 16, 3, rgb, 95);
    write_jpeg("jpg/red/b.JPG", 16, 16, 3, rgb, 95);
    uint8_t g[16 * 16];
    for (int i = 0; i < 256; i++)
        g[i] = (uint8_t)((i % 16) * 16);
    write_jpeg("jpg/grey/g.jpg", 16, 16, 1, g, 100);
    struct ud_load_opts o = {.shape = {3, 16, 16}};
    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path("jpg"), &o, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    assert_int_equal(ud_dataset_count(ds), 3);
    assert_string_equal(ud_dataset_class_name(ds, 0), "grey");
    assert_int_equal(ud_dataset_label(ds, 2), 1);
    float x[3 * 256];
    ud_dataset_get(ds, 0, x); /* grey gradient, replicated */
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++)
            assert_near(x[c * 256 + i] * 255.0f, (float)g[i], 3.0f);
    ud_dataset_get(ds, 1, x);
    for (int i = 0; i < 256; i++) {
        assert_near(x[i] * 255.0f, 200.0f, 4.0f);
        assert_near(x[256 + i] * 255.0f, 50.0f, 4.0f);
        assert_near(x[512 + i] * 255.0f, 10.0f, 4.0f);
    }
    ud_dataset_destroy(&ds);
}

/* A folder with a good image and one bad file; without skip_bad the bad one is an error naming
 * it, with skip_bad it is counted and reported. */
static void check_bad_image(const char *dir, const char *bad_name, const void *bytes, size_t len)
{
    struct ud_err e = {0};
    char rel[256];
    snprintf(rel, sizeof rel, "%s/k", dir);
    mkdirs(rel);
    const uint8_t g[4] = {1, 2, 3, 4};
    snprintf(rel, sizeof rel, "%s/k/a_good.png", dir);
    write_png(rel, 2, 2, 1, g);
    snprintf(rel, sizeof rel, "%s/k/%s", dir, bad_name);
    ud_test_write(rel, bytes, len);

    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path(dir), NULL, &e);
    assert_null(ds);
    assert_true(e.code == UD_EFORMAT || e.code == UD_ETRUNCATED);
    assert_msg_has(&e, bad_name);

    struct warns w = {0};
    struct ud_load_opts o = {.skip_bad = 1, .warn = on_warn, .warn_user = &w};
    ds = ud_dataset_load_images(ud_test_path(dir), &o, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_count(ds), 1);
    assert_int_equal(ud_dataset_skipped(ds), 1);
    assert_int_equal(w.n, 1);
    assert_non_null(strstr(w.all, bad_name));
    ud_dataset_destroy(&ds);
}

static void test_images_corrupt_png(void **state)
{
    make_image_tree();
    size_t len;
    uint8_t *png = (uint8_t *)ud_test_read(ud_test_path("img/dog/z.png"), &len);
    check_bad_image("badpng1", "t_trunc.png", png, len / 2);
    check_bad_image("badpng2", "t_garbage.png", "this is not a PNG at all", 24);
    /* A valid signature followed by garbage. */
    uint8_t sig_garbage[64];
    memcpy(sig_garbage, png, 8);
    for (int i = 8; i < 64; i++)
        sig_garbage[i] = (uint8_t)(i * 37);
    check_bad_image("badpng3", "t_sig.png", sig_garbage, sizeof sig_garbage);
    /* A flipped byte in the pixel data: CRC error. */
    uint8_t *flip = malloc(len);
    memcpy(flip, png, len);
    flip[len - 20] ^= 0x55;
    check_bad_image("badpng4", "t_crc.png", flip, len);
    free(flip);
    free(png);
}

static void test_images_corrupt_jpeg(void **state)
{
    uint8_t g[32 * 32];
    for (int i = 0; i < 32 * 32; i++)
        g[i] = (uint8_t)(i * 7);
    mkdirs("jsrc");
    write_jpeg("jsrc/x.jpg", 32, 32, 1, g, 90);
    size_t len;
    uint8_t *jpg = (uint8_t *)ud_test_read(ud_test_path("jsrc/x.jpg"), &len);
    check_bad_image("badjpg1", "t_trunc.jpg", jpg, len / 2);
    uint8_t garbage[200];
    memcpy(garbage, jpg, 3); /* FF D8 FF, then nonsense */
    for (int i = 3; i < 200; i++)
        garbage[i] = (uint8_t)(i * 13 + 5);
    check_bad_image("badjpg2", "t_garbage.jpeg", garbage, sizeof garbage);
    free(jpg);
}

static void test_images_too_large(void **state)
{
    struct ud_err e = {0};
    mkdirs("big/k");
    uint8_t *row = calloc(20000, 1);
    write_png("big/k/wide.png", 20000, 1, 1, row);
    free(row);
    struct ud_load_opts o = {.shape = {1, 8, 8}};
    assert_null(ud_dataset_load_images(ud_test_path("big"), &o, &e));
    assert_int_equal(e.code, UD_ELIMIT);
    assert_msg_has(&e, "wide.png");
    assert_msg_has(&e, "20000");
}

static void test_images_empty_class(void **state)
{
    struct ud_err e = {0};
    mkdirs("empty/a");
    mkdirs("empty/b_empty");
    mkdirs("empty/c");
    const uint8_t g[4] = {9, 9, 9, 9};
    write_png("empty/a/x.png", 2, 2, 1, g);
    write_png("empty/c/x.png", 2, 2, 1, g);
    write_text("empty/b_empty/readme.txt", "no images here");
    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path("empty"), NULL, &e);
    assert_null(ds);
    assert_int_equal(e.code, UD_EEMPTY);
    assert_msg_has(&e, "b_empty");

    /* skip_bad: the class is left out, with a warning, and the others renumbered. */
    struct warns w = {0};
    struct ud_load_opts o = {.skip_bad = 1, .warn = on_warn, .warn_user = &w};
    ds = ud_dataset_load_images(ud_test_path("empty"), &o, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_num_classes(ds), 2);
    assert_string_equal(ud_dataset_class_name(ds, 0), "a");
    assert_string_equal(ud_dataset_class_name(ds, 1), "c");
    assert_int_equal(ud_dataset_label(ds, 1), 1);
    assert_int_equal(ud_dataset_skipped(ds), 0);
    assert_int_equal(w.n, 1);
    assert_non_null(strstr(w.all, "b_empty"));
    ud_dataset_destroy(&ds);

    /* A class whose only image is bad goes the same way. */
    write_text("empty/b_empty/bad.png", "garbage");
    memset(&w, 0, sizeof w);
    ds = ud_dataset_load_images(ud_test_path("empty"), &o, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_num_classes(ds), 2);
    assert_int_equal(ud_dataset_skipped(ds), 1);
    assert_int_equal(w.n, 2);
    ud_dataset_destroy(&ds);

    /* No class folders at all. */
    mkdirs("noclasses");
    assert_null(ud_dataset_load_images(ud_test_path("noclasses"), NULL, &e));
    assert_int_equal(e.code, UD_EEMPTY);
}

static void test_images_max_samples(void **state)
{
    struct ud_err e = {0};
    make_image_tree();
    struct ud_load_opts o = {.shape = {1, 4, 4}, .max_samples = 3};
    ud_dataset_t *ds = ud_dataset_load_images(ud_test_path("img"), &o, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_count(ds), 3);
    assert_int_equal(ud_dataset_num_classes(ds), 3); /* the classes are still all folders */
    /* The subset is taken round-robin across classes: one sample of each, none left out. */
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < 3; i++)
        seen[ud_dataset_label(ds, i)]++;
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 1);
    assert_non_null(strstr(ud_dataset_source(ds, 2), "dog/")); /* ant, cat, dog in turn */
    ud_dataset_destroy(&ds);
}

static void test_image_load_one(void **state)
{
    struct ud_err e = {0};
    make_image_tree();
    float x[16];
    assert_int_equal(
        ud_image_load(ud_test_path("img/ant/a.png"), (struct ud_shape){1, 4, 4}, x, &e), 0);
    const float row[4] = {0, 64, 191, 255};
    for (int y = 0; y < 4; y++)
        for (int c = 0; c < 4; c++)
            assert_near(x[y * 4 + c], row[c] / 255.0f, 1e-6f);
    assert_int_equal(
        ud_image_load(ud_test_path("img/ant/b.PNG"), (struct ud_shape){3, 1, 1}, x, &e), 0);
    assert_true(x[0] == 1.0f && x[1] == 0.0f && x[2] == 0.0f);
    assert_int_equal(
        ud_image_load(ud_test_path("img/ant/notes.txt"), (struct ud_shape){1, 2, 2}, x, &e),
        UD_EFORMAT);
    assert_msg_has(&e, "notes.txt");
    assert_int_equal(
        ud_image_load(ud_test_path("img/ant/none.png"), (struct ud_shape){1, 2, 2}, x, &e),
        UD_ENOTFOUND);
    assert_msg_has(&e, "none.png");
    assert_int_equal(
        ud_image_load(ud_test_path("img/ant/a.png"), (struct ud_shape){4, 2, 2}, x, &e), UD_ESHAPE);
}

/* A 45-byte PNG whose header declares 10000 x 10000 pixels (each side under the side limit, the
 * whole over the pixel limit) is refused from its header, before 100 MB are allocated. */
static void test_image_pixel_limit(void **state)
{
    uint8_t png[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t ihdr[4 + 13] = {'I', 'H', 'D', 'R', 0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10, 8, 0};
    const uint8_t idat[4] = {'I', 'D', 'A', 'T'}; /* empty: the header is all it takes */
    uint8_t *p = png + 8;
    p[3] = 13;
    memcpy(p + 4, ihdr, sizeof ihdr);
    uint32_t crc = (uint32_t)crc32(0, ihdr, sizeof ihdr);
    p[21] = (uint8_t)(crc >> 24), p[22] = (uint8_t)(crc >> 16), p[23] = (uint8_t)(crc >> 8);
    p[24] = (uint8_t)crc;
    p += 25;
    memcpy(p + 4, idat, 4);
    crc = (uint32_t)crc32(0, idat, 4);
    p[8] = (uint8_t)(crc >> 24), p[9] = (uint8_t)(crc >> 16), p[10] = (uint8_t)(crc >> 8);
    p[11] = (uint8_t)crc;
    FILE *f = fopen(ud_test_path("huge.png"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(png, 1, sizeof png, f), sizeof png);
    fclose(f);
    struct ud_err e = {0};
    float x[4];
    assert_int_equal(ud_image_load(ud_test_path("huge.png"), (struct ud_shape){1, 2, 2}, x, &e),
                     UD_ELIMIT);
    assert_msg_has(&e, "10000 x 10000 pixels");
}

/* ---- IDX ---- */

static const uint8_t idx_labels5[5] = {3, 0, 2, 3, 1};

static void make_idx(const char *dir, int gz, uint32_t n_img, uint32_t n_lab)
{
    mkdirs(dir);
    uint8_t px[5 * 12];
    for (int i = 0; i < 60; i++)
        px[i] = (uint8_t)(i * 7);
    char rel[256];
    const char *sfx = gz ? ".gz" : "";
    uint32_t dims[3] = {n_img, 3, 4};
    snprintf(rel, sizeof rel, "%s/train-images-idx3-ubyte%s", dir, sfx);
    write_idx(rel, gz, 0x803, dims, 3, px, (size_t)n_img * 12);
    snprintf(rel, sizeof rel, "%s/train-labels-idx1-ubyte%s", dir, sfx);
    write_idx(rel, gz, 0x801, &n_lab, 1, idx_labels5, n_lab);
}

static void check_idx5(ud_dataset_t *ds)
{
    assert_int_equal(ud_dataset_count(ds), 5);
    struct ud_shape sh = ud_dataset_shape(ds);
    assert_true(sh.c == 1 && sh.h == 3 && sh.w == 4);
    assert_int_equal(ud_dataset_num_classes(ds), 4);
    assert_string_equal(ud_dataset_class_name(ds, 3), "3");
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(ud_dataset_label(ds, i), idx_labels5[i]);
    float x[12];
    ud_dataset_get(ds, 2, x);
    for (int k = 0; k < 12; k++)
        assert_near(x[k], (float)(uint8_t)((24 + k) * 7) / 255.0f, 1e-7f);
}

/* Loading the IDX images file img (its labels found by the usual naming) fails with code; the
 * error is returned for the checks of its message. */
static struct ud_err idx_refused(const char *img, int code)
{
    struct ud_err e = {0};
    assert_null(ud_dataset_load_idx(img, NULL, NULL, &e));
    assert_int_equal(e.code, code);
    return e;
}

static void test_idx_load(void **state)
{
    struct ud_err e = {0};
    make_idx("idx", 0, 5, 5);
    make_idx("idxgz", 1, 5, 5);
    ud_dataset_t *ds =
        ud_dataset_load_idx(ud_test_path("idx/train-images-idx3-ubyte"), NULL, NULL, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    check_idx5(ds);
    assert_non_null(strstr(ud_dataset_source(ds, 4), "train-images-idx3-ubyte"));
    ud_dataset_destroy(&ds);
    ds = ud_dataset_load_idx(ud_test_path("idxgz/train-images-idx3-ubyte.gz"), NULL, NULL, &e);
    if (!ds)
        fail_msg("%s", e.msg);
    check_idx5(ds);
    ud_dataset_destroy(&ds);
    /* Explicit labels path, mixing plain and gzip. */
    char lab[640];
    snprintf(lab, sizeof lab, "%s", ud_test_path("idx/train-labels-idx1-ubyte"));
    ds = ud_dataset_load_idx(ud_test_path("idxgz/train-images-idx3-ubyte.gz"), lab, NULL, &e);
    assert_non_null(ds);
    check_idx5(ds);
    ud_dataset_destroy(&ds);
    /* max_samples keeps the first ones. */
    struct ud_load_opts o = {.max_samples = 2};
    ds = ud_dataset_load_idx(ud_test_path("idxgz/train-images-idx3-ubyte.gz"), NULL, &o, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_count(ds), 2);
    assert_int_equal(ud_dataset_label(ds, 1), 0);
    ud_dataset_destroy(&ds);
    /* No way to find the labels from the name. */
    const char *odd = ud_test_write("odd.idx", "x", 1);
    e = idx_refused(odd, UD_EINVAL);
    /* A missing labels file. */
    mkdirs("idxnolab");
    uint32_t dims[3] = {1, 1, 1};
    uint8_t one = 1;
    const char *img = write_idx("idxnolab/t10k-images-idx3-ubyte", 0, 0x803, dims, 3, &one, 1);
    e = idx_refused(img, UD_ENOTFOUND);
    assert_msg_has(&e, "t10k-labels-idx1-ubyte");
}

static void test_idx_count_mismatch(void **state)
{
    struct ud_err e = {0};
    make_idx("idxmis", 1, 5, 4);
    assert_null(
        ud_dataset_load_idx(ud_test_path("idxmis/train-images-idx3-ubyte.gz"), NULL, NULL, &e));
    assert_int_equal(e.code, UD_ESHAPE);
    assert_msg_has(&e, "idxmis/train-images-idx3-ubyte.gz");
    assert_msg_has(&e, "idxmis/train-labels-idx1-ubyte.gz");
    assert_msg_has(&e, "5 images");
    assert_msg_has(&e, "4 labels");
}

static void test_idx_truncated(void **state)
{
    struct ud_err e = {0};
    uint8_t px[60] = {0};
    uint32_t dims[3] = {5, 3, 4};
    uint8_t lab[5] = {0, 1, 2, 3, 4};
    uint32_t nl = 5;
    for (int gz = 0; gz < 2; gz++) {
        char dir[32], rel[256];
        snprintf(dir, sizeof dir, "idxtr%d", gz);
        mkdirs(dir);
        const char *sfx = gz ? ".gz" : "";
        snprintf(rel, sizeof rel, "%s/train-labels-idx1-ubyte%s", dir, sfx);
        write_idx(rel, gz, 0x801, &nl, 1, lab, 5);
        snprintf(rel, sizeof rel, "%s/train-images-idx3-ubyte%s", dir, sfx);
        const char *img = write_idx(rel, gz, 0x803, dims, 3, px, 54);
        e = idx_refused(img, UD_ETRUNCATED);
        assert_msg_has(&e, "expected 60 bytes");
        assert_msg_has(&e, "got 54");
        /* Labels cut short too. */
        write_idx(rel, gz, 0x803, dims, 3, px, 60);
        snprintf(rel, sizeof rel, "%s/train-labels-idx1-ubyte%s", dir, sfx);
        write_idx(rel, gz, 0x801, &nl, 1, lab, 3);
        e = idx_refused(img, UD_ETRUNCATED);
        assert_msg_has(&e, "labels");
        assert_msg_has(&e, "got 3");
        /* A header cut short. */
        snprintf(rel, sizeof rel, "%s/train-images-idx3-ubyte%s", dir, sfx);
        write_idx(rel, gz, 0x803, dims, 1, NULL, 0);
        e = idx_refused(img, UD_ETRUNCATED);
    }
    /* A gzip stream cut in the middle. */
    uint8_t big[4000];
    for (int i = 0; i < 4000; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 24);
    uint32_t dims2[3] = {10, 20, 20};
    mkdirs("idxtrz");
    uint8_t lab10[10] = {0};
    uint32_t n10 = 10;
    write_idx("idxtrz/train-labels-idx1-ubyte.gz", 1, 0x801, &n10, 1, lab10, 10);
    const char *img =
        write_idx("idxtrz/train-images-idx3-ubyte.gz", 1, 0x803, dims2, 3, big, sizeof big);
    size_t len;
    uint8_t *z = (uint8_t *)ud_test_read(img, &len);
    ud_test_write("idxtrz/train-images-idx3-ubyte.gz", z, len / 2);
    free(z);
    e = idx_refused(img, UD_ETRUNCATED);
    assert_msg_has(&e, "train-images-idx3-ubyte.gz");
}

static void test_idx_bad_header(void **state)
{
    struct ud_err e = {0};
    make_idx("idxbad", 0, 5, 5);
    uint8_t px[60] = {0};
    uint32_t dims[3] = {5, 3, 4};
    const char *img = ud_test_path("idxbad/train-images-idx3-ubyte");
    write_idx("idxbad/train-images-idx3-ubyte", 0, 0x804, dims, 3, px, 60);
    e = idx_refused(img, UD_EFORMAT);
    assert_msg_has(&e, "magic");
    assert_msg_has(&e, "0x00000804");
    /* Labels magic. */
    write_idx("idxbad/train-images-idx3-ubyte", 0, 0x803, dims, 3, px, 60);
    uint32_t n5 = 5;
    write_idx("idxbad/train-labels-idx1-ubyte", 0, 0x803, &n5, 1, px, 5);
    e = idx_refused(img, UD_EFORMAT);
    assert_msg_has(&e, "train-labels-idx1-ubyte");
    write_idx("idxbad/train-labels-idx1-ubyte", 0, 0x801, &n5, 1, px, 5);
    /* Zero and oversized dimensions, refused before any allocation. */
    uint32_t zero[3] = {5, 0, 4};
    write_idx("idxbad/train-images-idx3-ubyte", 0, 0x803, zero, 3, px, 60);
    e = idx_refused(img, UD_EFORMAT);
    uint32_t huge[3] = {5, 100000, 4};
    write_idx("idxbad/train-images-idx3-ubyte", 0, 0x803, huge, 3, px, 60);
    e = idx_refused(img, UD_ELIMIT);
    /* A header claiming 4096 x 4096 x 5 images over 60 bytes: truncated, not a 80 MB alloc. */
    uint32_t claim[3] = {5, 4096, 4096};
    write_idx("idxbad/train-images-idx3-ubyte", 0, 0x803, claim, 3, px, 60);
    e = idx_refused(img, UD_ETRUNCATED);
    /* Data after what the header declares. */
    uint8_t more[61] = {0};
    write_idx("idxbad/train-images-idx3-ubyte", 0, 0x803, dims, 3, more, 61);
    e = idx_refused(img, UD_EFORMAT);
}

static void test_idx_fashion_names(void **state)
{
    struct ud_err e = {0};
    mkdirs("Fashion-mini");
    uint8_t px[10] = {0}, lab[10];
    for (int i = 0; i < 10; i++)
        lab[i] = (uint8_t)(9 - i);
    uint32_t dims[3] = {10, 1, 1}, n = 10;
    const char *img = write_idx("Fashion-mini/t10k-images-idx3-ubyte", 0, 0x803, dims, 3, px, 10);
    write_idx("Fashion-mini/t10k-labels-idx1-ubyte", 0, 0x801, &n, 1, lab, 10);
    ud_dataset_t *ds = ud_dataset_load_idx(img, NULL, NULL, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_num_classes(ds), 10);
    assert_string_equal(ud_dataset_class_name(ds, 0), "T-shirt/top");
    assert_string_equal(ud_dataset_class_name(ds, 9), "Ankle boot");
    ud_dataset_destroy(&ds);
    /* Fewer than 10 classes: numbers, even under a "fashion" path. */
    lab[0] = 3;
    write_idx("Fashion-mini/t10k-labels-idx1-ubyte", 0, 0x801, &n, 1, lab, 10);
    ds = ud_dataset_load_idx(img, NULL, NULL, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_num_classes(ds), 9);
    assert_string_equal(ud_dataset_class_name(ds, 0), "0");
    ud_dataset_destroy(&ds);
}

static void test_idx_fashion_real(void **state)
{
    struct ud_err e = {0};
    const char *path = FASHION_DIR "/t10k-images-idx3-ubyte.gz";
    if (access(path, R_OK) != 0)
        skip();
#ifdef __GLIBC__
    struct mallinfo2 before = mallinfo2();
#endif
    ud_dataset_t *ds = ud_dataset_load(path, NULL, &e);
#ifdef __GLIBC__
    struct mallinfo2 after = mallinfo2();
#endif
    if (!ds)
        fail_msg("%s", e.msg);
    assert_int_equal(ud_dataset_count(ds), 10000);
    struct ud_shape sh = ud_dataset_shape(ds);
    assert_true(sh.c == 1 && sh.h == 28 && sh.w == 28);
    assert_int_equal(ud_dataset_num_classes(ds), 10);
    assert_int_equal(ud_dataset_label(ds, 0), 9);
    assert_string_equal(ud_dataset_class_name(ds, 9), "Ankle boot");
    int count[10] = {0};
    for (size_t i = 0; i < 10000; i++) {
        int32_t l = ud_dataset_label(ds, i);
        assert_true(l >= 0 && l < 10);
        count[l]++;
    }
    for (int c = 0; c < 10; c++)
        assert_int_equal(count[c], 1000); /* the test set is balanced */
    float x[784];
    ud_dataset_get(ds, 0, x);
    float sum = 0;
    for (int k = 0; k < 784; k++) {
        assert_true(x[k] >= 0.0f && x[k] <= 1.0f);
        sum += x[k];
    }
    assert_true(sum > 10.0f); /* an actual picture, not zeros */
    /* Kept as bytes: 10000 x 784 = 7.8 MB (floats would be 31 MB). mallinfo2 may say nothing
     * under valgrind; then this is vacuous. */
#ifdef __GLIBC__
    size_t used = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd);
    assert_true(used < 10u * 1024 * 1024);
#endif
    ud_dataset_destroy(&ds);
}

/* ---- CSV ---- */

/* Writes text to file and loads it as CSV with o (may be NULL), which must succeed. */
static ud_dataset_t *csv_loaded(const char *file, const char *text, const struct ud_load_opts *o)
{
    struct ud_err e = {0};
    ud_dataset_t *ds = ud_dataset_load_csv(write_text(file, text), o, &e);
    if (!ds)
        fail_msg("%s: %s", file, e.msg);
    return ds;
}

static void test_csv_load(void **state)
{
    struct ud_err e = {0};
    ud_dataset_t *ds = csv_loaded("basic.csv",
                                  "\xEF\xBB\xBF"
                                  "f1,label,f2\r\n"
                                  "1.5,\"cat, big\",2\r\n"
                                  "-3, dog ,4e1\r\n"
                                  "0,\"say \"\"hi\"\"\",  7 \r\n"
                                  "\r\n\r\n",
                                  NULL);
    assert_int_equal(ud_dataset_count(ds), 3);
    struct ud_shape sh = ud_dataset_shape(ds);
    assert_true(sh.c == 2 && sh.h == 1 && sh.w == 1);
    assert_int_equal(ud_dataset_num_classes(ds), 3);
    assert_string_equal(ud_dataset_class_name(ds, 0), "cat, big");
    assert_string_equal(ud_dataset_class_name(ds, 1), "dog");
    assert_string_equal(ud_dataset_class_name(ds, 2), "say \"hi\"");
    float x[2];
    ud_dataset_get(ds, 0, x);
    assert_true(x[0] == 1.5f && x[1] == 2.0f);
    ud_dataset_get(ds, 1, x);
    assert_true(x[0] == -3.0f && x[1] == 40.0f);
    ud_dataset_get(ds, 2, x);
    assert_true(x[0] == 0.0f && x[1] == 7.0f);
    assert_int_equal(ud_dataset_label(ds, 1), 1);
    assert_non_null(strstr(ud_dataset_source(ds, 2), "basic.csv:4"));
    ud_dataset_destroy(&ds);

    /* No "label" column: the last one; repeated labels share a class; LF endings, no final
     * newline. */
    const char *p = write_text("last.csv", "a,b,kind\n1,2,y\n3,4,x\n5,6,y");
    ds = ud_dataset_load(p, NULL, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_count(ds), 3);
    assert_int_equal(ud_dataset_num_classes(ds), 2);
    assert_string_equal(ud_dataset_class_name(ds, 0), "x");
    assert_int_equal(ud_dataset_label(ds, 0), 1);
    assert_int_equal(ud_dataset_label(ds, 1), 0);
    ud_dataset_get(ds, 2, x);
    assert_true(x[0] == 5.0f && x[1] == 6.0f);
    ud_dataset_destroy(&ds);

    /* A named label column; a quoted line break counts toward line numbers. */
    struct ud_load_opts o = {.label_column = "a"};
    ds = csv_loaded("named.csv", "a,b,c\n\"two\nlines\",1,2\nq,3,4\n", &o);
    assert_string_equal(ud_dataset_class_name(ds, 1), "two\nlines");
    assert_non_null(strstr(ud_dataset_source(ds, 1), "named.csv:4"));
    ud_dataset_get(ds, 1, x);
    assert_true(x[0] == 3.0f && x[1] == 4.0f);
    ud_dataset_destroy(&ds);
    o.label_column = "nope";
    assert_null(ud_dataset_load_csv(ud_test_path("named.csv"), &o, &e));
    assert_int_equal(e.code, UD_ENOTFOUND);
    assert_msg_has(&e, "nope");

    /* A byte-order mark before a first column that is the label column. */
    ds = csv_loaded("bom.csv", "\xEF\xBB\xBFlabel,v\nk,1\n", NULL);
    assert_string_equal(ud_dataset_class_name(ds, 0), "k");
    ud_dataset_get(ds, 0, x);
    assert_true(x[0] == 1.0f);
    ud_dataset_destroy(&ds);

    /* max_samples. */
    struct ud_load_opts m = {.max_samples = 2};
    ds = csv_loaded("max.csv", "a,label\n1,x\n2,y\n3,z\n", &m);
    assert_int_equal(ud_dataset_count(ds), 2);
    assert_int_equal(ud_dataset_num_classes(ds), 2);
    ud_dataset_destroy(&ds);
}

/* CSV texts that must be refused: the error code, and up to three parts of the message. */
static const struct csv_refusal {
    const char *file, *text;
    int code;
    const char *has[3];
} csv_refusals[] = {
    {"fields.csv", "a,b,label\n1,2,x\n3,y\n", UD_EFORMAT, {"fields.csv:3", "expected 3", "got 2"}},
    {"fields2.csv", "a,b,label\r\n1,2,x\r\n3,4,y,5\r\n", UD_EFORMAT, {"fields2.csv:3", "got 4"}},
    {"nonnum.csv", "a,b,label\n1,2,x\n3,4,y\n5,abc,z\n", UD_EFORMAT, {"nonnum.csv:4:2", "abc"}},
    {"trail.csv", "a,b,label\n1,2x,x\n", UD_EFORMAT, {"trail.csv:2:2"}},
    {"emptyf.csv", "a,b,label\n1,,x\n", UD_EFORMAT, {"emptyf.csv:2:2"}},
    {"nf.csv", "a,label\nnan,x\n", UD_ENONFINITE, {"nf.csv:2:1"}},
    {"nf.csv", "a,label\ninf,x\n", UD_ENONFINITE, {"nf.csv:2:1"}},
    {"nf.csv", "a,label\n-Infinity,x\n", UD_ENONFINITE, {"nf.csv:2:1"}},
    {"nf.csv", "a,label\n1e39,x\n", UD_ENONFINITE, {"nf.csv:2:1"}},
    {"emptylab.csv", "a,label\n1,\n", UD_EFORMAT, {"emptylab.csv:2"}},
    {"quote.csv", "a,label\n1,\"open\n2,x\n", UD_EFORMAT, {"quote.csv:2"}},
    {"afterq.csv", "a,label\n1,\"x\"y\n", UD_EFORMAT, {"afterq.csv:2"}},
    {"hdronly.csv", "a,label\r\n\r\n", UD_EEMPTY, {NULL}},
    {"nothing.csv", "", UD_EEMPTY, {NULL}},
    {"onecol.csv", "label\nx\n", UD_EFORMAT, {NULL}},
};

static void test_csv_errors(void **state)
{
    struct ud_err e = {0};
    const char *p;
    for (size_t k = 0; k < sizeof csv_refusals / sizeof csv_refusals[0]; k++) {
        const struct csv_refusal *r = &csv_refusals[k];
        p = write_text(r->file, r->text);
        assert_null(ud_dataset_load_csv(p, NULL, &e));
        assert_int_equal(e.code, r->code);
        for (int h = 0; h < 3 && r->has[h]; h++)
            assert_msg_has(&e, r->has[h]);
    }
    p = ud_test_write("nul.csv", "a,label\n1,x\0\n", 13);
    assert_null(ud_dataset_load_csv(p, NULL, &e));
    assert_int_equal(e.code, UD_EFORMAT);

    /* Over the column limit (UD_MAX_DIM features + label). */
    size_t cols = UD_MAX_DIM + 2;
    char *wide = malloc(cols * 8 + 16);
    size_t len = 0;
    for (size_t i = 0; i < cols; i++)
        len += (size_t)sprintf(wide + len, "%sc%zu", i ? "," : "", i);
    strcpy(wide + len, "\n");
    p = write_text("wide.csv", wide);
    free(wide);
    assert_null(ud_dataset_load_csv(p, NULL, &e));
    assert_int_equal(e.code, UD_ELIMIT);
}

static void test_csv_skip_bad(void **state)
{
    struct ud_err e = {0};
    struct warns w = {0};
    struct ud_load_opts o = {.skip_bad = 1, .warn = on_warn, .warn_user = &w};
    ud_dataset_t *ds = csv_loaded("skip.csv",
                                  "a,b,label\n"
                                  "1,2,x\n"
                                  "3,y\n"
                                  "4,5,y\n"
                                  "6,nan,z\n"
                                  "7,8,x\n",
                                  &o);
    assert_int_equal(ud_dataset_count(ds), 3);
    assert_int_equal(ud_dataset_skipped(ds), 2);
    assert_int_equal(ud_dataset_num_classes(ds), 2); /* "z" was only on a bad row */
    assert_int_equal(w.n, 2);
    assert_non_null(strstr(w.all, "skip.csv:3"));
    assert_non_null(strstr(w.all, "skip.csv:5"));
    float x[2];
    ud_dataset_get(ds, 2, x);
    assert_true(x[0] == 7.0f && x[1] == 8.0f);
    ud_dataset_destroy(&ds);

    /* All rows bad: nothing to load, even with skip_bad. */
    assert_null(ud_dataset_load_csv(write_text("allbad.csv", "a,label\nq,x\n"), &o, &e));
    assert_int_equal(e.code, UD_EEMPTY);
}

/* ---- Dispatch ---- */

static void test_load_dispatch(void **state)
{
    struct ud_err e = {0};
    make_image_tree();
    make_idx("idxd", 1, 5, 5);
    ud_dataset_t *ds = ud_dataset_load(ud_test_path("img"), NULL, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_count(ds), 5);
    ud_dataset_destroy(&ds);
    ds = ud_dataset_load(ud_test_path("idxd/train-images-idx3-ubyte.gz"), NULL, &e);
    assert_non_null(ds);
    check_idx5(ds);
    ud_dataset_destroy(&ds);
    const char *p = write_text("UPPER.CSV", "x,label\n1,a\n");
    ds = ud_dataset_load(p, NULL, &e);
    assert_non_null(ds);
    assert_int_equal(ud_dataset_input_size(ds), 1);
    ud_dataset_destroy(&ds);
    assert_null(ud_dataset_load(ud_test_path("does/not/exist.csv"), NULL, &e));
    assert_int_equal(e.code, UD_ENOTFOUND);
    assert_msg_has(&e, "does/not/exist.csv");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_set_get),
        cmocka_unit_test(test_map_classes),
        cmocka_unit_test(test_provider),
        cmocka_unit_test(test_split_automatic),
        cmocka_unit_test(test_split_fixed),
        cmocka_unit_test(test_images_load),
        cmocka_unit_test(test_images_shape_and_channels),
        cmocka_unit_test(test_images_png_variants),
        cmocka_unit_test(test_images_jpeg),
        cmocka_unit_test(test_images_corrupt_png),
        cmocka_unit_test(test_images_corrupt_jpeg),
        cmocka_unit_test(test_images_too_large),
        cmocka_unit_test(test_images_empty_class),
        cmocka_unit_test(test_images_max_samples),
        cmocka_unit_test(test_image_load_one),
        cmocka_unit_test(test_idx_load),
        cmocka_unit_test(test_idx_count_mismatch),
        cmocka_unit_test(test_idx_truncated),
        cmocka_unit_test(test_idx_bad_header),
        cmocka_unit_test(test_idx_fashion_names),
        cmocka_unit_test(test_idx_fashion_real),
        cmocka_unit_test(test_csv_load),
        cmocka_unit_test(test_image_pixel_limit),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_csv_skip_bad),
        cmocka_unit_test(test_load_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
