// Headless Node-RED for bench/e2e.py: no editor, no admin API, no HTTP nodes, no telemetry.
// bench/e2e.py sets the BENCH_* variables (ports, a temporary userDir, the flow file).
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.BENCH_UI_PORT || "1880", 10),
    httpAdminRoot: false,
    httpNodeRoot: false,
    userDir: process.env.BENCH_USER_DIR,
    flowFile: process.env.BENCH_FLOW_FILE,
    credentialSecret: false,
    flowFilePretty: false,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    functionExternalModules: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
};
