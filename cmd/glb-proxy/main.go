package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/glb-project/glb/consul"
	"github.com/glb-project/glb/internal/version"
	"github.com/glb-project/glb/proxy/clients"
	"github.com/glb-project/glb/proxy/config"
	"github.com/glb-project/glb/proxy/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, hup); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "glb-proxy:", err)
			os.Exit(1)
		}
	}
}

const usage = `glb-proxy is a caching proxy for the GitHub REST and GraphQL APIs and git
smart HTTP. Clients (gh, go-github, octokit, curl, git) use it as a GitHub
Enterprise host with a glbp_ client token; the proxy answers from its cache,
revalidates with ETags (a 304 costs no rate limit) and signs upstream
requests with a shared pool of PATs and GitHub App installations.

Usage:
  glb-proxy --config FILE [--log-level LEVEL]   serve (SIGHUP reloads, SIGTERM stops)
  glb-proxy token new [--name NAME]             mint a client token; print it and its sha256
  glb-proxy token hash                          read a token on stdin; print its sha256
  glb-proxy check (--config FILE | --clients FILE) [--no-secrets]
                                                validate a configuration or a client registry
  glb-proxy clients push --clients FILE --consul consul://HOST:PORT/PREFIX
                                                validate a client registry and store it in
                                                Consul KV (PREFIX/proxy/clients), where every
                                                glb-proxy with clients_consul picks it up
  glb-proxy clients show --consul consul://HOST:PORT/PREFIX
                                                print the client registry stored in Consul KV
  glb-proxy --version

The configuration and the client registry are described in docs/proxy.md.

Flags:
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, hup <-chan os.Signal) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdin, stdout, stderr)
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "clients":
			return runClients(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("glb-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the configuration `FILE` (YAML; see docs/proxy.md)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "glb-proxy", version.Version)
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	var level slog.LevelVar
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: &level}))
	redis.SetLogger(redisLogger{log})

	cfg, err := config.Load(*cfgPath, nil)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := server.Options{Log: log, Registry: reg, Version: version.Version}
	if cfg.Registration.Consul != "" {
		opts.Register = consulRegistrar(cfg.Registration, log.With("component", "consul"))
	}
	p, err := server.New(cfg, opts)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			log.Info("SIGHUP: reloading the configuration", "config", *cfgPath)
			ncfg, err := config.Load(*cfgPath, nil)
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			if err := p.Reload(ncfg); err != nil {
				log.Error("reload incomplete", "err", err)
			}
		}
	}
}

// consulRegistrar registers the proxy with the Consul agent while it runs
// and deregisters it on shutdown (DESIGN.md §7).
func consulRegistrar(r config.Registration, log *slog.Logger) func(context.Context, server.Service) (func(context.Context) error, error) {
	return func(ctx context.Context, s server.Service) (func(context.Context) error, error) {
		svc := &consul.Service{Agent: r.Consul, Address: r.Address, Port: s.Port, Cluster: r.Cluster, Table: r.Table,
			CheckURL: s.HealthURL, Log: log}
		// The registration outlives ctx until the deregister function
		// runs, so that the proxy leaves the catalog before it stops
		// serving.
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- svc.Run(runCtx) }()
		return func(dctx context.Context) error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-dctx.Done():
				return fmt.Errorf("deregister from consul: %w", dctx.Err())
			}
		}, nil
	}
}

// redisLogger sends go-redis's own messages to the structured log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "msg_detail", clients.Redact(fmt.Sprintf(format, v...)))
}

const tokenUsage = `glb-proxy token: client tokens (glbp_…) for the client registry.

Usage:
  glb-proxy token new [--name NAME]   mint a token; print it, its sha256 and, with
                                      --name, a registry entry to paste
  glb-proxy token hash                read a token on stdin; print its sha256

Only the sha256 goes into the registry; give the token to the client.
`

const clientsUsage = `glb-proxy clients: the client registry in Consul KV (PREFIX/proxy/clients).

Usage:
  glb-proxy clients push --clients FILE --consul consul://HOST:PORT/PREFIX
                          validate a registry file and store it, where every
                          glb-proxy with clients_consul picks it up
  glb-proxy clients show --consul consul://HOST:PORT/PREFIX
                          print the stored registry

The Consul token comes from $CONSUL_HTTP_TOKEN. "glb-proxy clients push --help"
lists a command's flags.
`

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

func runToken(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("token: want \"new\" or \"hash\" (see glb-proxy token --help)")
	}
	if isHelp(args[0]) {
		fmt.Fprint(stderr, tokenUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "new":
		fs := flag.NewFlagSet("glb-proxy token new", flag.ContinueOnError)
		fs.SetOutput(stderr)
		name := fs.String("name", "", "client `NAME`: also print a registry entry for it")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		tok, err := clients.NewToken()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token:        %s\ntoken_sha256: %s\n", tok, clients.HashToken(tok))
		if *name != "" {
			fmt.Fprintf(stdout, "\n# Give the token to the client; put this entry in the client registry:\n"+
				"  - name: %s\n    token_sha256: %q\n    scopes:\n      - {methods: [GET, HEAD], path: \"/repos/your-org/*/**\"}  # narrow this\n",
				*name, clients.HashToken(tok))
		}
		return nil
	case "hash":
		fs := flag.NewFlagSet("glb-proxy token hash", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Usage = func() {
			fmt.Fprintln(stderr, "Usage: glb-proxy token hash < TOKEN-FILE\n\nReads a glbp_ token on stdin and prints its sha256 for the client registry.")
		}
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("token hash: unexpected argument %q: the token comes on stdin, never on the command line", fs.Arg(0))
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("token hash: read stdin: %w", err)
		}
		tok := strings.TrimSpace(line)
		if err := clients.CheckToken(tok); err != nil {
			return fmt.Errorf("token hash: %w", err)
		}
		fmt.Fprintln(stdout, clients.HashToken(tok))
		return nil
	}
	return fmt.Errorf("token: unknown command %q: want new or hash (see glb-proxy token --help)", args[0])
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("glb-proxy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "validate this configuration `FILE` and the registry it names")
	clientsPath := fs.String("clients", "", "validate this client registry `FILE` alone (for GitOps CI)")
	noSecrets := fs.Bool("no-secrets", false, "do not read secrets (environment variables, key files)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*cfgPath == "") == (*clientsPath == "") {
		return errors.New("check: give --config or --clients")
	}
	path := *clientsPath
	if *cfgPath != "" {
		data, err := os.ReadFile(*cfgPath)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		cfg, err := config.Parse(data)
		if err != nil {
			return fmt.Errorf("config %s: %w", *cfgPath, err)
		}
		if !*noSecrets {
			if err := cfg.ResolveSecrets(nil); err != nil {
				return fmt.Errorf("config %s: %w", *cfgPath, err)
			}
		}
		fmt.Fprintf(stdout, "config %s: ok (%d credentials)\n", *cfgPath, len(cfg.Credentials))
		if cfg.ClientsConsul != "" {
			fmt.Fprintf(stdout, "clients: in %s/%s, not checked here (check the file before glb-proxy clients push, which checks it too)\n",
				cfg.ClientsConsul, consul.ClientsKey)
			return nil
		}
		path = cfg.ClientsFile
	}
	_, set, err := readClients(path)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	fmt.Fprintf(stdout, "clients %s: ok (%d clients)\n", path, len(set.Clients))
	for _, w := range set.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return nil
}

func runClients(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stderr, clientsUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "push" && args[0] != "show") {
		return errors.New("clients: want \"push\" or \"show\" (see glb-proxy --help)")
	}
	verb := args[0]
	fs := flag.NewFlagSet("glb-proxy clients "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	at := fs.String("consul", "", "the Consul KV prefix `URL`: consul://HOST:PORT/PREFIX, as in clients_consul (the token comes from $CONSUL_HTTP_TOKEN)")
	var file *string
	if verb == "push" {
		file = fs.String("clients", "", "the client registry `FILE` to validate and store")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("clients %s: unexpected argument %q", verb, fs.Arg(0))
	}
	if *at == "" {
		return fmt.Errorf("clients %s: --consul is required", verb)
	}
	addr, prefix, err := consul.ParseURL(*at)
	if err != nil {
		return fmt.Errorf("clients %s: --consul: %w", verb, err)
	}
	kv, err := consul.NewKVStore(addr, prefix, consul.Options{})
	if err != nil {
		return fmt.Errorf("clients %s: %w", verb, err)
	}
	key := kv.String() + "/" + consul.ClientsKey
	current, index, err := kv.Clients(ctx)
	if err != nil {
		return fmt.Errorf("clients %s: %w", verb, err)
	}
	if verb == "show" {
		if current == nil {
			return fmt.Errorf("clients show: %s does not exist: store a registry with glb-proxy clients push", key)
		}
		_, err := stdout.Write(current)
		return err
	}
	if *file == "" {
		return errors.New("clients push: --clients is required")
	}
	data, set, err := readClients(*file)
	if err != nil {
		return fmt.Errorf("clients push: %w (nothing was written)", err)
	}
	if current != nil && string(current) == string(data) {
		fmt.Fprintf(stdout, "clients %s: ok (%d clients); %s already holds it\n", *file, len(set.Clients), key)
		return nil
	}
	// Written only if the key is still as read: two pushes at once never
	// lose one silently.
	if err := kv.ReplaceClients(ctx, data, index); err != nil {
		return fmt.Errorf("clients push: %w", err)
	}
	fmt.Fprintf(stdout, "clients %s: ok (%d clients); written to %s\n", *file, len(set.Clients), key)
	return nil
}

// readClients reads and validates a client registry file.
func readClients(path string) ([]byte, *clients.Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	set, err := clients.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("clients %s: %w", path, err)
	}
	return data, set, nil
}
