//! The committed `openapi.json` is the document the routes generate (utoipa), byte for byte, so
//! the published description can never drift from the code. After changing a route or a wire
//! type: `VESPER_BLESS=1 cargo test -p vesper-backend --test openapi`, and commit the file.

use std::path::Path;

#[test]
fn committed_openapi_json_is_the_generated_document() {
    let generated = vesper_backend::openapi()
        .to_pretty_json()
        .expect("the document serializes")
        + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("VESPER_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == generated,
        "{} differs from the generated document; regenerate it with \
         `VESPER_BLESS=1 cargo test -p vesper-backend --test openapi` and review the diff",
        path.display()
    );
}

#[test]
fn every_route_is_described_with_its_answers() {
    let doc: serde_json::Value =
        serde_json::from_str(&vesper_backend::openapi().to_json().unwrap()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (route, method) in [
        ("/healthz", "get"),
        ("/openapi.json", "get"),
        ("/manufacturing/batch", "post"),
        ("/manufacturing/batch/{id}", "get"),
        ("/manufacturing/batch/{id}/labels", "post"),
        ("/manufacturing/batch/{id}/claim", "post"),
        ("/manufacturing/batches", "get"),
        ("/manufacturing/devices", "get"),
        ("/manufacturing/devices/{sn}", "get"),
        ("/manufacturing/devices/{sn}/events", "get"),
        ("/manufacturing/devices/{sn}/status", "post"),
        ("/manufacturing/devices/{sn}/assign", "post"),
        ("/manufacturing/devices/{sn}/claim", "post"),
        ("/manufacturing/devices/{sn}/release", "post"),
        ("/manufacturing/devices/{sn}/flashed", "post"),
        ("/manufacturing/devices/{sn}/users", "post"),
        ("/manufacturing/devices/{sn}/tests", "post"),
        ("/manufacturing/devices/{sn}/tests", "get"),
        ("/manufacturing/batch/{id}/report", "get"),
        ("/manufacturing/devices/{sn}/nvs.bin", "get"),
        ("/manufacturing/devices/{sn}/firmware.bin", "get"),
        ("/manufacturing/firmware/{hw_type}/{hw_version}", "get"),
        ("/manufacturing/audit", "get"),
        ("/manufacturing/stats", "get"),
        ("/ota/{board}/{file}", "get"),
        ("/ota/{board}/{release}/{file}", "get"),
        ("/mqtt/auth/user", "post"),
        ("/mqtt/auth/acl", "post"),
        ("/mqtt/auth/superuser", "post"),
        ("/metrics", "get"),
    ] {
        let operation = &paths
            .get(route)
            .unwrap_or_else(|| panic!("{route} is not documented"))[method];
        assert!(operation.is_object(), "{method} {route} is not documented");
        assert!(
            operation["responses"]["200"].is_object() || operation["responses"]["201"].is_object(),
            "{method} {route} has no success answer"
        );
    }
    // Errors are typed: the 409 body names its code from the one enum.
    let codes = &doc["components"]["schemas"]["ConflictCode"]["enum"];
    for code in [
        "batch_done",
        "claimed_elsewhere",
        "device_in_field",
        "unknown_board",
    ] {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code} missing from {codes}"
        );
    }
    // Every reference resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "#/components/schemas/{name} is referenced but not described"
        );
    }
    // Status counts are keyed by status.
    let counts = &doc["components"]["schemas"]["StatusCounts"];
    assert!(counts.to_string().contains("manufactured"), "{counts}");
}
