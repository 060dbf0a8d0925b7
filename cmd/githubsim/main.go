package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/glb-project/glb/internal/version"
	"github.com/glb-project/glb/test/githubsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, hup); err != nil {
		fmt.Fprintln(os.Stderr, "githubsim:", err)
		os.Exit(1)
	}
}

const usage = `githubsim simulates the GitHub REST and GraphQL APIs, GitHub App auth and
git smart HTTP, with per-token rate limits, ETags and usage stats.

Usage: githubsim [flags]

Seed data: acme/widgets (public), acme/gadgets (private), octo/hello (public),
with issues, pull requests, commits and branches. REST is served at / and
/api/v3, GraphQL at /graphql and /api/graphql, git (clone, fetch, push) at
/<owner>/<repo>.git with the token as Basic-auth password.
Control and stats (JSON, no auth): GET /_sim/stats, POST /_sim/reset-stats,
/_sim/tokens, /_sim/apps, /_sim/issues, /_sim/push, /_sim/repos,
/_sim/remaining, /_sim/limit, /_sim/secondary, /_sim/fail, /_sim/reset-limits;
GET /_sim/stream?chunks=N&interval=100ms, /_sim/health.

Tokens are never logged; only their labels are. SIGHUP re-reads --tokens-file.

Flags:
`

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer, hup <-chan os.Signal) error {
	fs := flag.NewFlagSet("githubsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tokens, installations, limits multiFlag
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on (`HOST:PORT`; port 0 picks a free one)")
	addrFile := fs.String("addr-file", "", "write the address actually listened on to `FILE` once ready")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate `FILE` (PEM; needs --tls-key)")
	tlsKey := fs.String("tls-key", "", "private key `FILE` for --tls-cert")
	fs.Var(&tokens, "token", "accept a personal access token, as `LABEL=TOKEN` (repeatable); stats report LABEL")
	tokensFile := fs.String("tokens-file", "", "read LABEL=TOKEN lines from `FILE` (# comments); re-read on SIGHUP")
	appID := fs.Int64("app-id", 0, "register a GitHub App with this `ID` (needs --app-key)")
	appKey := fs.String("app-key", "", "the App's RSA key, public or private PEM `FILE`")
	fs.Var(&installations, "installation", "an installation `ID` of the App (repeatable)")
	dataDir := fs.String("data-dir", "", "write the bare git repositories under `DIR` (default: a temporary directory)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	latency := fs.Duration("latency", 0, "add this `DURATION` before every API answer, like a distant GitHub")
	limitStatus := fs.Int("limit-status", 403, "status of rate-limited REST answers: 403 or 429")
	fs.Var(&limits, "limit", "change a primary limit for every token, as `RESOURCE=N[/WINDOW]` (repeatable; e.g. core=100, search=5/1m)")
	maxConcurrent := fs.Int("max-concurrent", 0, "requests one credential may have in flight before a secondary limit (GitHub: 100; 0: no limit)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	if *showVersion {
		fmt.Fprintln(stdout, "githubsim", version.Version)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *limitStatus != 403 && *limitStatus != 429 {
		return fmt.Errorf("--limit-status must be 403 or 429, not %d", *limitStatus)
	}

	sim := &githubsim.Server{Log: log, DataDir: *dataDir, Latency: *latency, LimitStatus: *limitStatus, MaxConcurrent: *maxConcurrent}
	defer sim.Close()
	for _, l := range limits {
		resource, limit, err := parseLimit(l)
		if err != nil {
			return fmt.Errorf("--limit: %w", err)
		}
		if sim.Limits == nil {
			sim.Limits = map[string]githubsim.Limit{}
		}
		sim.Limits[resource] = limit
	}
	flagTokens := map[string]bool{}
	for _, t := range tokens {
		label, tok, err := parseTokenSpec(t)
		if err != nil {
			return fmt.Errorf("--token: %w", err)
		}
		sim.AddToken(tok, label)
		flagTokens[tok] = true
	}
	var fileTokens map[string]string
	if *tokensFile != "" {
		var err error
		if fileTokens, err = loadTokens(sim, *tokensFile, nil, flagTokens, log); err != nil {
			return err
		}
	}
	if (*appID != 0) != (*appKey != "") {
		return errors.New("--app-id and --app-key go together")
	}
	if *appID != 0 {
		pemBytes, err := os.ReadFile(*appKey)
		if err != nil {
			return fmt.Errorf("--app-key: %w", err)
		}
		key, err := githubsim.ParsePublicKey(pemBytes)
		if err != nil {
			return fmt.Errorf("--app-key %s: %w", *appKey, err)
		}
		var ids []int64
		for _, s := range installations {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("--installation %q: want a positive integer", s)
			}
			ids = append(ids, id)
		}
		sim.AddApp(*appID, key, ids...)
	} else if len(installations) > 0 {
		return errors.New("--installation needs --app-id")
	}
	if *dataDir != "" {
		if err := sim.WriteRepositories(); err != nil {
			return err
		}
	}

	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if srv.TLSConfig != nil {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	addr := ln.Addr().String()
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(addr+"\n"), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("--addr-file: %w", err)
		}
	}
	log.Info("listening", "addr", addr, "tls", srv.TLSConfig != nil, "version", version.Version)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	for {
		select {
		case <-hup:
			if *tokensFile != "" {
				if loaded, err := loadTokens(sim, *tokensFile, fileTokens, flagTokens, log); err != nil {
					log.Error("reload tokens; keeping the old ones", "err", err)
				} else {
					fileTokens = loaded
				}
			}
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
			return nil
		}
	}
}

func parseTokenSpec(s string) (label, token string, err error) {
	label, token, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok || label == "" || token == "" {
		return "", "", errors.New("want LABEL=TOKEN")
	}
	return label, token, nil
}

// loadTokens reads LABEL=TOKEN lines from path and registers them. Tokens
// of the previous load (old) that the file no longer has are revoked,
// unless a --token flag gave them too. It returns the tokens it loaded.
func loadTokens(sim *githubsim.Server, path string, old map[string]string, keep map[string]bool, log *slog.Logger) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	defer f.Close()
	loaded := map[string]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		label, tok, err := parseTokenSpec(t)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		loaded[tok] = label
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	for tok, label := range loaded {
		sim.AddToken(tok, label)
	}
	var revoked []string
	for tok, label := range old {
		if _, still := loaded[tok]; !still && !keep[tok] {
			sim.RemoveToken(tok)
			revoked = append(revoked, label)
		}
	}
	log.Info("tokens loaded", "file", path, "count", len(loaded), "revoked_labels", revoked)
	return loaded, nil
}

// parseLimit reads RESOURCE=N or RESOURCE=N/WINDOW.
func parseLimit(s string) (string, githubsim.Limit, error) {
	resource, spec, ok := strings.Cut(s, "=")
	n, window, hasWindow := strings.Cut(spec, "/")
	count, err := strconv.Atoi(n)
	if !ok || resource == "" || err != nil || count < 0 {
		return "", githubsim.Limit{}, fmt.Errorf("%q: want RESOURCE=N or RESOURCE=N/WINDOW", s)
	}
	l := githubsim.Limit{N: count}
	if hasWindow {
		if l.Window, err = time.ParseDuration(window); err != nil || l.Window <= 0 {
			return "", githubsim.Limit{}, fmt.Errorf("%q: bad window %q", s, window)
		}
	}
	return resource, l, nil
}
