"""Kubernetes manifests generated from the routes: `embedq k8s render --out DIR`."""
