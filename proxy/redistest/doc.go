// Package redistest starts real redis-server processes for glb-proxy's
// tests: a single server that a test can kill and restart on the same
// port, and a three-node Redis Cluster. Every process lives in a temporary
// directory, persists nothing, and is killed by tb.Cleanup even when the
// test fails. Without redis-server the test skips (fails in CI).
package redistest
