// Loaded with --import when Node runs under LD_PRELOAD=libclang_rt.asan: child processes must not inherit it.
delete process.env.LD_PRELOAD;
