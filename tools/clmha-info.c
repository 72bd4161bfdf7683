/*
 * clmha-info - lists every OpenCL platform and device with the properties that matter to
 * clmha, marks the device clmha would select under the current environment and says why, and
 * prints the launch settings a context there would use (its tuning row and what CLMHA_TUNE
 * overrides), with any warning about variables clmha no longer reads. Exits non-zero with the
 * library's message when the environment selects nothing or CLMHA_TUNE is not valid.
 */
#include <clmha.h>

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: clmha-info [--help]\n"
               "\n"
               "Lists every OpenCL platform and device and marks (with '*') the one clmha\n"
               "selects under the current environment:\n"
               "  CLMHA_PLATFORM     platform index, or substring of its name or vendor\n"
               "  CLMHA_DEVICE       device index after the filters, or substring of its name\n"
               "  CLMHA_DEVICE_TYPE  gpu, cpu, accelerator or all\n"
               "Default: the first GPU, else the first device. Then prints the settings a\n"
               "context there uses: its tuning row and what CLMHA_TUNE (\"key=value,...\")\n"
               "overrides. See docs/devices.md.\n");
}

/* Prints the library's warnings (a variable it no longer reads) as clmha-info's own lines. */
static void print_warning(clmha_log_level level, const char *msg, void *user) {
    (void)user;
    if (level <= CLMHA_LOG_WARN) {
        fprintf(stderr, "clmha-info: %s\n", msg);
    }
}

static double mib(uint64_t b) {
    return (double)b / (1024.0 * 1024.0);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "clmha-info: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    clmha_device_info *list = NULL;
    size_t count = 0, sel = 0;
    char reason[512] = "";
    if (clmha_list_devices(&list, &count) != CLMHA_OK) {
        fprintf(stderr, "clmha-info: %s\n", clmha_last_error());
        return 1;
    }
    clmha_status st = clmha_select_device(NULL, list, count, &sel, reason, sizeof reason);
    printf("clmha %s\n", clmha_version_string());
    size_t last_p = (size_t)-1;
    for (size_t i = 0; i < count; i++) {
        const clmha_device_info *d = &list[i];
        if (d->platform_index != last_p) {
            last_p = d->platform_index;
            printf("\nplatform %zu: %s\n  vendor: %s\n  version: %s\n", d->platform_index,
                   d->platform_name, d->platform_vendor, d->platform_version);
        }
        printf("\n %c device %zu: %s\n", (st == CLMHA_OK && i == sel) ? '*' : ' ', d->device_index,
               d->name);
        printf("    type: %s   version: %s   driver: %s\n", clmha_device_type_name(d->type),
               d->version, d->driver_version);
        printf("    compute units: %u   global memory: %.0f MiB   local memory: %.0f KiB\n",
               d->compute_units, mib(d->global_mem_bytes), (double)d->local_mem_bytes / 1024.0);
        printf("    max allocation: %.0f MiB   max work-group: %zu   work-items: %zu x %zu x %zu\n",
               mib(d->max_alloc_bytes), d->max_work_group_size, d->max_work_item_sizes[0],
               d->max_work_item_sizes[1], d->max_work_item_sizes[2]);
        printf("    fp16: %s   fp64: %s   tuning: %s\n", d->fp16 ? "yes" : "no",
               d->fp64 ? "yes" : "no", clmha_device_tuning_name(d));
    }
    if (st != CLMHA_OK) {
        fprintf(stderr, "\nclmha-info: %s\n", clmha_last_error());
        clmha_free_device_list(list);
        return 1;
    }
    printf("\nselected: platform %zu device %zu (%s): %s\n", list[sel].platform_index,
           list[sel].device_index, list[sel].name, reason);
    clmha_free_device_list(list);
    clmha_context_options o;
    clmha_context_options_init(&o);
    o.log_fn = print_warning;
    o.log_level = CLMHA_LOG_WARN;
    clmha_context *ctx = NULL;
    if (clmha_context_create(&o, &ctx) != CLMHA_OK) {
        fprintf(stderr, "\nclmha-info: %s\n", clmha_last_error());
        return 1;
    }
    char settings[1024];
    clmha_context_settings(ctx, settings, sizeof settings);
    printf("settings: %s\n", settings);
    clmha_context_release(ctx);
    return 0;
}
