/*
 * keep_modules.c: part of the sanitized build only (-DMG_SANITIZE=ON, which
 * links it into every program). Shared objects are never unloaded: Open MPI
 * closes its components (mca_*.so) in MPI_Finalize, and the allocations they
 * keep until exit by design would then be reported by LeakSanitizer with
 * stacks in "<unknown module>", which no suppression (tests/lsan.supp) can
 * name. With the modules kept, the fast unwinder's stacks name them, and
 * the tests need not ask for a full unwind at every malloc, which made the
 * sanitized suite several times slower.
 */
int dlclose(void *handle);

int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
