//! The registry client's `walcast_registry_*` series of one connector.

use reqwest::Method;

/// `walcast_registry_*` of one connector, resolved once.
pub(super) struct RegistryMetrics {
    pub(super) register: prometheus::IntCounter,
    lookup: prometheus::IntCounter,
    register_errors: prometheus::IntCounter,
    lookup_errors: prometheus::IntCounter,
    pub(super) cache_hits: prometheus::IntCounter,
}

impl RegistryMetrics {
    pub(super) fn of(connector: &str) -> Self {
        let m = crate::observe::metrics();
        Self {
            register: m
                .registry_requests
                .with_label_values(&[connector, "register"]),
            lookup: m
                .registry_requests
                .with_label_values(&[connector, "lookup"]),
            register_errors: m
                .registry_errors
                .with_label_values(&[connector, "register"]),
            lookup_errors: m.registry_errors.with_label_values(&[connector, "lookup"]),
            cache_hits: m.registry_cache_hits.with_label_values(&[connector]),
        }
    }

    /// A request of `method` was sent (POST registers, the rest look up).
    pub(super) fn sent(&self, method: &Method) {
        if *method == Method::POST {
            &self.register
        } else {
            &self.lookup
        }
        .inc();
    }

    pub(super) fn failed(&self, method: &Method) {
        if *method == Method::POST {
            &self.register_errors
        } else {
            &self.lookup_errors
        }
        .inc();
    }
}
