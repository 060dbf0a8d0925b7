// Command glb-proxy is the caching GitHub API proxy of glb (DESIGN.md §9):
//
//	glb-proxy --config /etc/glb/glb-proxy.yaml
//	glb-proxy token new --name deploy-bot     # mint a client token and its sha256
//	glb-proxy token hash < token.txt          # the sha256 of an existing token
//	glb-proxy check --config FILE | --clients FILE
//
// SIGHUP reloads the configuration (client registry, TLS files); SIGTERM
// and SIGINT shut down gracefully. main only wires; run does the work so
// tests can call it.
package main
