/*  fuzz_csv.c — libFuzzer target: the CSV reader (ud__dataset_csv_mem, the code
 *  ud_dataset_load_csv runs on a file's bytes). First byte: bit 0 skip_bad, bit 1 a named label
 *  column ("y"), bit 2 max_samples 3; the rest is the file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ud_data_impl.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct ud_load_opts o = {0};
    o.skip_bad = data[0] & 1;
    if (data[0] & 2)
        o.label_column = "y";
    if (data[0] & 4)
        o.max_samples = 3;
    struct ud_err e = {0};
    ud_dataset_t *ds = ud__dataset_csv_mem(data + 1, size - 1, "fuzz.csv", &o, &e);
    if (ds) {
        size_t n = ud_dataset_count(ds), isz = ud_dataset_input_size(ds);
        float *x = malloc(isz * sizeof *x);
        if (!x || n == 0 || ud_dataset_get(ds, n - 1, x) != 0 ||
            ud_dataset_label(ds, n - 1) >= ud_dataset_num_classes(ds))
            fuzz_fail(&e);
        free(x);
        ud_dataset_destroy(&ds);
    }
    return 0;
}
