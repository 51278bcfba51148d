/*  gen_corpus.c — writes the fuzz targets' seed corpus: gen_corpus DIR makes DIR/<target>/<seed>.
 *
 *  Seeds are small valid inputs made with the real encoders (models, checkpoint files, every
 *  worker-protocol message type, update messages), the JSON examples of docs/rest.md and
 *  docs/agent.md, a few CSV files, and tiny PNG, JPEG and IDX files. Each seed starts with the
 *  selector byte its target reads first (see the target's comment). Deterministic: the same
 *  build writes the same bytes, so tests/fuzz/corpus/ can be regenerated and diffed
 *  (tests/fuzz/run.sh --regen-corpus).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <sodium.h>
#include <zlib.h>

#include "ud_envelope_impl.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_file.h"
#include "updraft/ud_update_msg.h"
#include "updraft/ud_model.h"
#include "updraft/ud_msg.h"
#include "updraft/ud_rng.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_udm.h"

static const char *root;

__attribute__((noreturn)) static void die(const char *what, const struct ud_err *e)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

/* Writes DIR/target/name = [sel (when >= 0)] + p[0..n). */
static void seed(const char *target, const char *name, int sel, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path, NULL);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        die(path, NULL);
    if (sel >= 0)
        fputc(sel, f);
    if ((n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        die(path, NULL);
}

static void seed_str(const char *target, const char *name, int sel, const char *s)
{
    seed(target, name, sel, s, strlen(s));
}

/* The body of an envelope (to seed the targets' "sealed here" mode). */
static void seed_body(const char *target, const char *name, int sel, const char *magic,
                      const void *file, size_t n)
{
    struct ud__env_format f = {
        .magic = magic, .version = 1, .what = magic, .noun = magic, .max_bytes = (size_t)1 << 30};
    const unsigned char *body;
    size_t blen;
    struct ud_err e = {0};
    if (ud__env_open(&f, file, n, &body, &blen, &e) != 0)
        die("envelope", &e);
    seed(target, name, sel, body, blen);
}

static ud_model_t *model(const char *spec, int nlabels)
{
    struct ud_arch a;
    struct ud_err e = {0};
    if (ud_arch_parse(spec, &a, &e) != 0)
        die("arch", &e);
    ud_model_t *m = ud_model_new(&a, &e);
    if (!m)
        die("model", &e);
    ud_model_init_params(m, 7);
    static const char *const labels[] = {"cat", "dog", "\xc3\xa9t\xc3\xa9"};
    if (ud_model_set_labels(m, labels, nlabels, &e) != 0)
        die("labels", &e);
    /* The default author is the user running this: the seeds must not depend on it. */
    struct ud_metadata *md = ud_model_metadata(m);
    free(md->author);
    md->author = strdup("updraft fuzz corpus");
    return m;
}

static const char *const CNN = "input 1 4 4\nconv2d 2 3 pad=1\nrelu\nmaxpool 2\nflatten\n"
                               "dense 3\nsoftmax\n";
static const char *const MLP = "input 3 1 1\ndense 4\nrelu\ndense 2\nsoftmax\n";

static void gen_arch(void)
{
    seed_str("arch", "cnn", -1, CNN);
    seed_str("arch", "mlp", -1, MLP);
    seed_str("arch", "full", -1,
             "# every layer kind\ninput 3 12 12\nconv2d 4 3 pad=1 stride=1 frozen\nrelu\n"
             "maxpool 2\ndropout 0.25\nconv2d 8 3 stride=2\nrelu\nflatten\ndense 16 frozen\n"
             "relu\ndense 5\nsoftmax\n");
}

static void gen_udm(void)
{
    const char *specs[] = {CNN, MLP};
    int nl[] = {3, 2};
    for (int i = 0; i < 2; i++) {
        ud_model_t *m = model(specs[i], nl[i]);
        char *buf;
        size_t len;
        struct ud_err e = {0};
        if (ud_udm_encode(m, &buf, &len, &e) != 0)
            die("encode", &e);
        char name[32];
        snprintf(name, sizeof name, "file-%d", i);
        seed("udm", name, 0, buf, len);
        snprintf(name, sizeof name, "body-%d", i);
        seed_body("udm", name, 1, "UDM1", buf, len);
        free(buf);
        ud_model_destroy(&m);
    }
}

/* Sealed files under fuzz_seal's fixed keys (signing seed 0x01 x 32, model key 0x02 x 32), so
 * that the fuzzer starts past the signature and the tag; plus key-file texts. The encrypted
 * seeds carry a random nonce: they differ from one generation to the next. */
static void gen_seal(void)
{
    struct ud_err e = {0};
    uint8_t s1[32], s2[32];
    memset(s1, 1, sizeof s1);
    memset(s2, 2, sizeof s2);
    struct ud_key sk, mk;
    memset(&sk, 0, sizeof sk);
    memset(&mk, 0, sizeof mk);
    char hex[129], text[256];
    uint8_t pk[32], sec[64];
    crypto_sign_seed_keypair(pk, sec, s1);
    sodium_bin2hex(hex, sizeof hex, sec, 64);
    snprintf(text, sizeof text, "updraft-key 1 sign-secret %s\n", hex);
    if (ud_key_parse(text, strlen(text), "gen", UD_KEY_SIGN_SECRET, &sk, &e) != 0)
        die("sign key", &e);
    seed_str("seal", "key-sign-secret", 2, text);
    sodium_bin2hex(hex, sizeof hex, s2, 32);
    snprintf(text, sizeof text, "# a comment\nupdraft-key 1 model-key %s\n", hex);
    if (ud_key_parse(text, strlen(text), "gen", UD_KEY_MODEL, &mk, &e) != 0)
        die("model key", &e);
    seed_str("seal", "key-model", 2, text);
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    snprintf(text, sizeof text, "updraft-key 1 curve-public %s\n", hex);
    seed_str("seal", "key-curve-public", 2, text);

    ud_model_t *m = model(MLP, 2);
    char *udm, *sig, *enc, *both;
    size_t n, sn, en, bn;
    if (ud_udm_encode(m, &udm, &n, &e) != 0 || ud_seal_sign(udm, n, &sk, &sig, &sn, &e) != 0 ||
        ud_seal_encrypt(udm, n, &mk, &enc, &en, &e) != 0 ||
        ud_seal_sign(enc, en, &sk, &both, &bn, &e) != 0)
        die("seal", &e);
    seed("seal", "signed-open", 0, sig, sn);
    seed("seal", "signed", 1, sig, sn);
    seed("seal", "encrypted-open", 0, enc, en);
    seed("seal", "encrypted-signed", 1, both, bn);
    free(udm);
    free(sig);
    free(enc);
    free(both);
    ud_model_destroy(&m);
}

static void gen_ckpt(void)
{
    char dir[] = "/tmp/gen-corpus-ckpt.XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp", NULL);
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    struct ud_err e = {0};
    ud_model_t *m = model(MLP, 2);
    struct ud_ckpt_state st;
    memset(&st, 0, sizeof st);
    snprintf(st.phase, sizeof st.phase, "training");
    st.iteration = 14;
    st.date = 1700000000;
    st.metrics.loss = 0.69;
    st.metrics.accuracy = NAN;
    st.metrics.val_loss = NAN;
    st.metrics.val_accuracy = 0.8;
    st.metrics.learning_rate = 0.01;
    st.epoch = 2;
    st.steps_per_epoch = 7;
    st.total_steps = 70;
    st.world = 2;
    st.threads = 1;
    ud_update_params_default(&st.params);
    snprintf(st.fingerprint, sizeof st.fingerprint, "arch mlp\ndata /d.csv\n");
    float optim[4] = {0.5f, -0.25f, 1e-3f, 0};
    st.optim_state = optim;
    st.optim_floats = 4;
    st.optim_steps = 14;
    struct ud_rng r;
    ud_rng_seed(&r, 3, 4);
    if (ud_ckpt_begin(ck, &e) || ud_ckpt_write_model(ck, m, &e) ||
        ud_ckpt_write_state(ck, &st, &e) || ud_ckpt_write_rank(ck, 0, 2, &r, &e) ||
        ud_ckpt_write_rank(ck, 1, 2, &r, &e) || ud_ckpt_commit(ck, 2, &e))
        die("checkpoint", &e);
    const char *files[] = {"state.ckpt", "rank-00001.ckpt", "DONE"};
    const char *magic[] = {"UDCK", "UDCR", NULL};
    for (int i = 0; i < 3; i++) {
        char p[4300], name[32];
        snprintf(p, sizeof p, "%s/%s", ck, files[i]);
        size_t n;
        char *b = NULL;
        if (ud_file_read(p, (size_t)1 << 30, &b, &n, &e) != 0)
            die(p, &e);
        snprintf(name, sizeof name, "file-%d", i);
        seed("ckpt", name, i, b, n);
        if (magic[i]) {
            snprintf(name, sizeof name, "body-%d", i);
            seed_body("ckpt", name, 4 | i, magic[i], b, n);
        }
        free(b);
        unlink(p);
    }
    char p[4300];
    snprintf(p, sizeof p, "%s/model.udm", ck);
    unlink(p);
    snprintf(p, sizeof p, "%s/rank-00000.ckpt", ck);
    unlink(p);
    rmdir(ck);
    rmdir(dir);
    ud_model_destroy(&m);
}

static void set(char **f, const char *s)
{
    if (ud_msg_set_str(f, s) != 0)
        die("set", NULL);
}

static void gen_proto(void)
{
    static const char *const SHA =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for (int t = UD_MSG_REGISTER; t <= UD_MSG_ERROR; t++) {
        struct ud_msg m;
        memset(&m, 0, sizeof m);
        m.type = (enum ud_msg_type)t;
        m.id = 1000 + (uint64_t)t;
        struct ud_err e = {0};
        switch (m.type) {
        case UD_MSG_REGISTER:
            set(&m.job, "");
            m.world = 3;
            set(&m.host, "node-1");
            m.pid = 42;
            m.resume = 1;
            break;
        case UD_MSG_JOB: {
            set(&m.job, "job-000001");
            set(&m.name, "fashion");
            ud_msg_add_arg(&m, "--epochs");
            ud_msg_add_arg(&m, "3");
            static char *names[] = {"a", "b", "c"};
            struct ud_manifest man = {
                .samples = 12, .nclasses = 3, .classes = names, .labels_hash = 0xfedcba98ull};
            uint32_t tr[10], va[2] = {10, 11};
            for (uint32_t i = 0; i < 10; i++)
                tr[i] = i;
            if (ud_plan_make(&man, tr, 10, va, 2, 99, 4, 1, 2, &m.plan, &e))
                die("plan", &e);
            m.has_plan = 1;
            set(&m.session, "/s/session");
            set(&m.out, "/s/model.udm");
            m.heartbeat_s = 1.0;
            break;
        }
        case UD_MSG_HEARTBEAT:
            set(&m.job, "job-000001");
            m.rank = 1;
            set(&m.host, "node-2");
            m.pid = 77;
            m.step = 12;
            break;
        case UD_MSG_PROGRESS:
            set(&m.job, "job-000001");
            m.step = 40;
            m.epoch = 1;
            m.minibatch = 5;
            m.steps_per_epoch = 35;
            m.total_steps = 105;
            ud_msg_add_metric(&m, "loss", 0.69);
            ud_msg_add_metric(&m, "val_loss", NAN);
            break;
        case UD_MSG_CHECKPOINT:
            set(&m.job, "job-000001");
            m.step = 70;
            m.epoch = 2;
            set(&m.path, "/s/session/checkpoints/ckpt-000000000070");
            break;
        case UD_MSG_MODEL:
            set(&m.job, "job-000001");
            set(&m.name, "fashion");
            set(&m.sha256, SHA);
            m.udm = malloc(16);
            memcpy(m.udm, "\x94\xa4UDM1\x01\xc4\x00........", 16);
            m.udm_len = 16;
            ud_msg_add_metric(&m, "test_accuracy", 0.875);
            break;
        case UD_MSG_MODEL_ACK:
            m.version = 7;
            set(&m.sha256, SHA);
            break;
        case UD_MSG_DONE:
            set(&m.job, "job-000001");
            set(&m.status, "failed");
            m.code = UD_EMPI;
            set(&m.msg, "rank 2 died");
            break;
        case UD_MSG_ACK:
            m.cancel = 1;
            break;
        case UD_MSG_ERROR:
            m.code = UD_EFORMAT;
            set(&m.msg, "bad message");
            break;
        default:
            break;
        }
        void *out;
        size_t len;
        if (ud_msg_encode(&m, &out, &len, &e) != 0)
            die(ud_msg_type_name(m.type), &e);
        seed("proto", ud_msg_type_name(m.type), -1, out, len);
        free(out);
        ud_msg_deinit(&m);
    }
}

static void gen_update_msg(void)
{
    static const float d[5] = {0.5f, -1.25f, 3e-8f, 0.0f, -0.0f};
    struct ud_update_msg m = {.round = 42,
                              .base_version = 4,
                              .samples = 600,
                              .loss = 0.69,
                              .accuracy = 0.81,
                              .delta = d,
                              .n = 5};
    snprintf(m.key, sizeof m.key, "dev7-42-0123456789abcdef");
    for (int i = 0; i < 2; i++) {
        char *buf, name[16];
        size_t len;
        struct ud_err e = {0};
        if (ud_update_msg_encode(&m, &buf, &len, &e) != 0)
            die("update", &e);
        snprintf(name, sizeof name, "update-%d", i);
        seed("update_msg", name, -1, buf, len);
        free(buf);
        m.n = 0;
    }
}

static void gen_json(void)
{
    /* POST /v1/jobs (docs/rest.md), a fuller one, and refusals. */
    seed_str("rest_json", "job-doc", 0,
             "{\n  \"name\": \"fashion-mlp\",\n"
             "  \"data\": \"/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz\",\n"
             "  \"test\": \"/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz\",\n"
             "  \"arch\": \"mlp\", \"epochs\": 3, \"batch\": 128, \"lr\": 0.05,\n"
             "  \"launch\": {\"np\": 2}\n}");
    seed_str("rest_json", "job-full", 0,
             "{\"name\":\"j\",\"data\":\"/d.csv\",\"arch\":\"cnn\",\"input\":\"1,28,28\","
             "\"epochs\":2,\"batch\":32,\"lr\":0.1,\"momentum\":0.9,\"nesterov\":true,"
             "\"optimizer\":\"adam\",\"schedule\":\"cosine\",\"seed\":7,\"shuffle\":false,"
             "\"validation\":\"0.1\",\"skip_bad\":true,\"max_samples\":100,"
             "\"launch\":{\"np\":1,\"max_restarts\":2}}");
    seed_str("rest_json", "job-bad", 0, "{\"name\": \"x\", \"epoch\": 3}");
    seed_str("rest_json", "fed-doc", 1,
             "{\n  \"name\": \"fm-phones\", \"model\": \"fm\", \"rounds\": 20, "
             "\"clients_per_round\": 50,\n  \"min_clients\": 20, \"round_deadline\": 600, "
             "\"eval\": \"/data/fm/t10k-images-idx3-ubyte.gz\"\n}");
    seed_str("rest_json", "fed-full", 1,
             "{\"name\":\"f\",\"model\":\"m\",\"version\":2,\"strategy\":\"fedavg\",\"rounds\":3,"
             "\"clients_per_round\":4,\"min_clients\":2,\"round_deadline\":60.5,"
             "\"availability\":30,\"epochs\":1,\"batch\":32,\"lr\":0.05,\"max_norm\":10,"
             "\"server_lr\":1.0,\"seed\":18446744073709551615}");
    seed_str("rest_json", "enrol-name", 2, "{\"name\": \"phone-17\"}");
    seed_str("rest_json", "enrol-count", 2, "{\"name\": \"ph\", \"count\": 3}");
    seed_str("rest_json", "failure", 3, "{\"reason\": \"failed\"}");
    seed_str("rest_json", "token", 4,
             "1.7b72a13b716b0d80e560865179f5e5343903d15b4cae1159af409cd6181ff4f3");
    /* The agent's inputs (docs/rest.md's task, docs/agent.md's state directory). */
    seed_str("agent_json", "task-doc", 0,
             "{\"federation\":2,\"round\":2,\"number\":1,\n"
             " \"model\":{\"name\":\"fm\",\"version\":1,\"sha256\":"
             "\"44baf762fe1ad8197a903a07c61dc8575de7a54622b808185a5b8bd6a88936fb\","
             "\"size\":2144405,\n          \"url\":\"/v1/models/fm/versions/1/file\"},\n"
             " \"epochs\":1,\"batch\":128,\"lr\":0.05,\"max_norm\":100,"
             "\"deadline\":1796222406.2528279,\n \"upload\":\"/v1/rounds/2/updates\"}");
    seed_str("agent_json", "state", 1,
             "{\"current\": {\"round\": 3, \"key\": \"1-3-0123456789abcdef\", \"upload\": "
             "\"/v1/rounds/3/updates\", \"deadline\": 1796222406.25, \"base_version\": 1, "
             "\"model_sha256\": "
             "\"44baf762fe1ad8197a903a07c61dc8575de7a54622b808185a5b8bd6a88936fb\"}, "
             "\"done\": [{\"round\": 1, \"result\": \"accepted\"}, {\"round\": 2, \"result\": "
             "\"stale\"}]}");
    seed_str("agent_json", "state-idle", 1, "{\"current\": null, \"done\": []}");
    seed_str("agent_json", "download", 2,
             "{\"sha256\": \"44baf762fe1ad8197a903a07c61dc8575de7a54622b808185a5b8bd6a88936fb\", "
             "\"size\": 2144405}\n");
}

static void gen_csv(void)
{
    seed_str("csv", "basic", 0, "f1,f2,label\n0.5,1,cat\n-2e3,3.25,dog\n1,2,cat\n");
    seed_str(
        "csv", "quoted-crlf", 1,
        "\xEF\xBB\xBF\"a\",\"b, c\",label\r\n1,\" 2\",\"say \"\"hi\"\"\"\r\n\r\n3,4,\"x\ny\"\r\n");
    seed_str("csv", "named-y", 2, "y,x0,x1,x2\na,1,2,3\nb,4,5,6\n\n\n");
    seed_str("csv", "bad-rows", 1, "x,label\n1,a\nnan,b\n2\n3,\n4,c,5\n");
    seed_str("csv", "max", 4, "p,q,label\n1,2,a\n3,4,b\n5,6,c\n7,8,d\n");
}

static void gen_png(const char *name, int sel, int w, int h, png_uint_32 format)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = format;
    size_t n = PNG_IMAGE_SIZE(im);
    unsigned char *px = malloc(n);
    for (size_t i = 0; i < n; i++)
        px[i] = (unsigned char)(i * 37 + 11);
    png_alloc_size_t len = 0;
    if (!png_image_write_to_memory(&im, NULL, &len, 0, px, 0, NULL))
        die("png size", NULL);
    void *out = malloc(len);
    if (!png_image_write_to_memory(&im, out, &len, 0, px, 0, NULL))
        die("png", NULL);
    seed("image", name, sel, out, len);
    free(out);
    free(px);
}

static void gen_jpeg(const char *name, int sel, int w, int h, int c, int progressive)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&ci, &out, &len);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 50, TRUE);
    if (progressive)
        jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    unsigned char *row = malloc((size_t)w * (size_t)c);
    while (ci.next_scanline < ci.image_height) {
        for (int i = 0; i < w * c; i++)
            row[i] = (unsigned char)(i * 13 + ci.next_scanline * 29);
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    seed("image", name, sel, out, len);
    free(out);
    free(row);
}

static void gen_images(void)
{
    gen_png("png-grey-8x8", 2 * 8 - 2, 8, 8, PNG_FORMAT_GRAY);
    gen_png("png-rgba-5x3", 2 * 4 - 1, 5, 3, PNG_FORMAT_RGBA);
    gen_png("png-rgb-4x4-same", 2 * 3 + 1, 4, 4, PNG_FORMAT_RGB);
    gen_jpeg("jpeg-grey-8x8", 2 * 7 - 2, 8, 8, 1, 0);
    gen_jpeg("jpeg-rgb-16x9", 2 * 6 - 1, 16, 9, 3, 0);
    gen_jpeg("jpeg-rgb-prog-9x9", 2 * 4 - 2, 9, 9, 3, 1);
}

/* gzip of p[0..n) into a fresh buffer. */
static void *gz(const void *p, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflate", NULL);
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        die("deflate", NULL);
    *out_len = z.total_out;
    deflateEnd(&z);
    return out;
}

static void gen_idx(void)
{
    /* 3 images of 2 x 3 and their labels. */
    unsigned char img[16 + 18] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3};
    for (int i = 0; i < 18; i++)
        img[16 + i] = (unsigned char)(i * 14);
    unsigned char lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 9};
    unsigned char buf[2 + sizeof img + sizeof lab];
    buf[0] = 0;
    buf[1] = sizeof img;
    memcpy(buf + 2, img, sizeof img);
    memcpy(buf + 2 + sizeof img, lab, sizeof lab);
    seed("idx", "plain", -1, buf, sizeof buf);
    size_t gi, gl;
    unsigned char *zi = gz(img, sizeof img, &gi), *zl = gz(lab, sizeof lab, &gl);
    unsigned char *b2 = malloc(2 + gi + gl);
    b2[0] = (unsigned char)(gi >> 8);
    b2[1] = (unsigned char)gi;
    memcpy(b2 + 2, zi, gi);
    memcpy(b2 + 2 + gi, zl, gl);
    seed("idx", "gzip", -1, b2, 2 + gi + gl);
    free(b2);
    free(zi);
    free(zl);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        die(root, NULL);
    gen_udm();
    gen_seal();
    gen_arch();
    gen_ckpt();
    gen_proto();
    gen_update_msg();
    gen_json();
    gen_csv();
    gen_images();
    gen_idx();
    return 0;
}
