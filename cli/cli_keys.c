/*  cli_keys.c — `updraft keys generate|show|sign|verify` and `updraft encrypt|decrypt`: the
 *  operator's side of signed and encrypted models (ud_keys.h, ud_seal.h; docs/security.md).
 *
 *  Exit codes: 0 success; 1 a failure (message printed); 2 a usage error; and, so that scripts
 *  can tell them apart, 3 the model is not signed, 4 it is signed or encrypted with another key,
 *  5 it was altered after it was signed or encrypted.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

#define SEALED_FILE_MAX ((size_t)UD_SEAL_MAX_PAYLOAD + UD_SEAL_HEADER_BYTES + UD_SEAL_SIG_BYTES)

/* "sign-secret key", "model key": how messages name a key's type. */
static const char *kind(const struct ud_key *k)
{
    static const char *const names[] = {"sign-secret key", "sign-public key", "model key",
                                        "curve-secret key", "curve-public key"};
    return (unsigned)k->type < 5 ? names[k->type] : "key";
}

static int fail(int code, const char *what, const struct ud_err *e)
{
    fprintf(stderr, "updraft %s: %s\n", what, e->msg);
    return code;
}

/* Options shared by the commands: --type, --key, --out, --force, and one positional file. */
struct key_opts {
    const char *type, *key, *out, *file;
    bool force;
};

static int parse(const char *cmd, int argc, char **argv, struct key_opts *o)
{
    static const struct option longs[] = {
        {"type", required_argument, 0, 't'}, {"key", required_argument, 0, 'k'},
        {"out", required_argument, 0, 'o'},  {"force", no_argument, 0, 'f'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0;
    int c;
    /* getopt wants argv[0] to be the program; our argv starts at the first option. */
    char **av = argv - 1;
    while ((c = getopt_long(argc + 1, av, ":o:", longs, NULL)) != -1) {
        switch (c) {
        case 't':
            o->type = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'f':
            o->force = true;
            break;
        case 'h':
            cli_usage_of(stdout, "keys");
            cli_usage_of(stdout, "encrypt");
            cli_usage_of(stdout, "decrypt");
            exit(0);
        case ':':
            return cli_usage_error("%s: an option needs a value", cmd);
        default:
            return cli_usage_error("%s: unknown option", cmd);
        }
    }
    for (int i = optind; i < argc + 1; i++) {
        if (o->file)
            return cli_usage_error("one file at a time ('%s')", av[i]);
        o->file = av[i];
    }
    return 0;
}

static int keys_generate(struct key_opts *o)
{
    enum ud_key_type t;
    if (!o->type || !o->out)
        return cli_usage_error("%s", "keys generate --type sign|model|curve --out PATH [--force]");
    if (strcmp(o->type, "sign") == 0)
        t = UD_KEY_SIGN_SECRET;
    else if (strcmp(o->type, "model") == 0)
        t = UD_KEY_MODEL;
    else if (strcmp(o->type, "curve") == 0)
        t = UD_KEY_CURVE_SECRET;
    else
        return cli_usage_error("keys generate: --type is sign, model or curve, not '%s'", o->type);
    struct ud_err e = {0};
    struct ud_key k, p;
    int rc = ud_key_generate(t, &k, &e);
    if (rc == 0)
        rc = ud_key_write(o->out, &k, o->force, &e);
    if (rc)
        return fail(1, "keys generate", &e);
    printf("%s: %s %s\n", o->out, kind(&k), k.id);
    if (t != UD_KEY_MODEL) {
        char pub[4096];
        snprintf(pub, sizeof pub, "%s.pub", o->out);
        ud_key_public(&k, &p, &e);
        if (ud_key_write(pub, &p, o->force, &e))
            rc = fail(1, "keys generate", &e);
        else
            printf("%s: %s %s\n", pub, kind(&p), p.id);
    }
    ud_key_wipe(&k);
    return rc;
}

static int keys_show(struct key_opts *o)
{
    if (!o->file)
        return cli_usage_error("%s", "keys show KEYFILE");
    struct ud_err e = {0};
    char *text = NULL;
    size_t len = 0;
    if (ud_file_read(o->file, 4096, &text, &len, &e))
        return fail(1, "keys show", &e);
    /* Try each type: the file says which it is. */
    struct ud_key k;
    int rc = UD_EFORMAT;
    for (int t = UD_KEY_SIGN_SECRET; t <= UD_KEY_CURVE_PUBLIC; t++)
        if ((rc = ud_key_parse(text, len, o->file, (enum ud_key_type)t, &k, &e)) == 0 &&
            k.type == (enum ud_key_type)t)
            break;
    sodium_memzero(text, len);
    free(text);
    if (rc)
        return fail(1, "keys show", &e);
    printf("%s: %s %s", o->file, kind(&k), k.id);
    if (k.type != UD_KEY_MODEL) {
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, k.pub, 32);
        printf(", public key %s", hex);
    }
    printf("\n");
    ud_key_wipe(&k);
    return 0;
}

/* Reads MODEL (bounded), transforms it, writes OUT (default: MODEL, replaced atomically). */
static int rewrite(const char *what, const struct key_opts *o, const struct ud_key *k,
                   int (*fn)(const void *, size_t, const struct ud_key *, char **, size_t *,
                             struct ud_err *))
{
    struct ud_err e = {0};
    char *in = NULL, *out = NULL;
    size_t n = 0, on = 0;
    int rc = ud_file_read(o->file, SEALED_FILE_MAX, &in, &n, &e);
    if (rc == 0 && (rc = fn(in, n, k, &out, &on, &e)) != 0)
        ud_err_prefix(&e, "%s", o->file);
    if (rc == 0)
        rc = ud_file_write_atomic(o->out ? o->out : o->file, out, on, &e);
    free(in);
    free(out);
    return rc ? fail(ud_seal_exit_status(rc), what, &e) : 0;
}

static int keys_sign(struct key_opts *o)
{
    if (!o->key || !o->file)
        return cli_usage_error("%s", "keys sign --key SIGN.key MODEL [--out OUT]");
    struct ud_err e = {0};
    struct ud_key k;
    if (ud_key_read(o->key, UD_KEY_SIGN_SECRET, &k, &e))
        return fail(1, "keys sign", &e);
    int rc = rewrite("keys sign", o, &k, ud_seal_sign);
    if (rc == 0)
        printf("%s: signed by key %s\n", o->out ? o->out : o->file, k.id);
    ud_key_wipe(&k);
    return rc;
}

static int keys_verify(struct key_opts *o)
{
    if (!o->key || !o->file)
        return cli_usage_error("%s", "keys verify --key SIGN.pub MODEL");
    struct ud_err e = {0};
    struct ud_key k;
    if (ud_key_read(o->key, UD_KEY_SIGN_PUBLIC, &k, &e))
        return fail(1, "keys verify", &e);
    char *in = NULL;
    size_t n = 0;
    struct ud_seal_info info;
    int rc = ud_file_read(o->file, SEALED_FILE_MAX, &in, &n, &e);
    if (rc == 0)
        rc = ud_seal_verify(in, n, &k, &info, &e);
    free(in);
    if (rc) {
        ud_err_prefix(&e, "%s", o->file);
        return fail(ud_seal_exit_status(rc), "keys verify", &e);
    }
    printf("%s: signed by key %s: the signature verifies%s\n", o->file, k.id,
           info.encrypted ? " (the model inside is encrypted)" : "");
    return 0;
}

static int seal_encrypt(const void *in, size_t n, const struct ud_key *k, char **out, size_t *on,
                        struct ud_err *e)
{
    return ud_seal_encrypt(in, n, k, out, on, e);
}

/* Decrypts; refuses a signed file's signature only if it is malformed (verify separately). */
static int seal_decrypt(const void *in, size_t n, const struct ud_key *k, char **out, size_t *on,
                        struct ud_err *e)
{
    struct ud_seal_info info;
    struct ud_seal_keys keys = {NULL, k};
    int rc = ud_seal_open(in, n, &keys, out, on, &info, e);
    if (rc == 0 && !info.encrypted) {
        free(*out);
        *out = NULL;
        return ud_err_set(e, UD_EINVAL, "the model is not encrypted");
    }
    return rc;
}

static int crypt_cmd(const char *cmd, int argc, char **argv)
{
    struct key_opts o;
    int rc = parse(cmd, argc, argv, &o);
    if (rc)
        return rc;
    if (!o.key || !o.file || !o.out)
        return cli_usage_error("%s --key MODEL.key MODEL --out OUT", cmd);
    struct ud_err e = {0};
    struct ud_key k;
    if (ud_key_read(o.key, UD_KEY_MODEL, &k, &e))
        return fail(1, cmd, &e);
    bool enc = strcmp(cmd, "encrypt") == 0;
    rc = rewrite(cmd, &o, &k, enc ? seal_encrypt : seal_decrypt);
    if (rc == 0)
        printf("%s: %s with model key %s\n", o.out, enc ? "encrypted" : "decrypted", k.id);
    ud_key_wipe(&k);
    return rc;
}

int cli_keys_main(int argc, char **argv)
{
    if (argc < 1)
        return cli_usage_error("%s", "keys generate|show|sign|verify ...");
    struct key_opts o;
    int rc = parse("keys", argc - 1, argv + 1, &o);
    if (rc)
        return rc;
    if (strcmp(argv[0], "generate") == 0)
        return keys_generate(&o);
    if (strcmp(argv[0], "show") == 0)
        return keys_show(&o);
    if (strcmp(argv[0], "sign") == 0)
        return keys_sign(&o);
    if (strcmp(argv[0], "verify") == 0)
        return keys_verify(&o);
    return cli_usage_error("keys: unknown subcommand '%s' (generate, show, sign, verify)", argv[0]);
}

int cli_encrypt_main(int argc, char **argv)
{
    return crypt_cmd("encrypt", argc, argv);
}

int cli_decrypt_main(int argc, char **argv)
{
    return crypt_cmd("decrypt", argc, argv);
}
