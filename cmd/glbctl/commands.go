package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/glb-project/glb/director/table"

	"github.com/glb-project/glb/internal/version"
)

// errUsage means the command line was wrong; the usage has been printed.
var errUsage = errors.New("usage error")

// command is one glbctl subcommand. Path is its words ("table rows").
type command struct {
	path    string
	args    string // the synopsis after the path
	summary string
	help    string // the long help, after the flags' defaults
	flags   func(fs *flag.FlagSet) func(ctx context.Context, env env) error
}

// env is what a command reads and writes.
type env struct {
	stdout, stderr io.Writer
	args           []string // positional arguments after the flags
	getenv         func(string) string
	now            func() time.Time
	log            *slog.Logger // operational logs (stderr)
}

func commands() []command {
	return []command{
		statusCommand(),
		hostStateCommand(table.Draining),
		hostStateCommand(table.Filling),
		hostStateCommand(table.Active),
		hostStateCommand(table.Inactive),
		tableRowsCommand(),
		tableDiffCommand(),
		hashCommand(),
		stateExportCommand(),
		stateImportCommand(),
		chatopsServeCommand(),
	}
}

const overview = `glbctl is the operator CLI for glb, the load balancer stack of glb-director,
glb-redirect and glb-proxy.

Usage:
  glbctl COMMAND [FLAGS]

Commands:
%s
Run "glbctl COMMAND --help" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, args, env{
		stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now,
		log: slog.New(slog.NewTextHandler(stderr, nil)),
	})
}

// dispatch runs one command line with the given environment (run uses the
// process's; chatops runs commands in-process with its own).
func dispatch(ctx context.Context, args []string, base env) error {
	stdout, stderr := base.stdout, base.stderr
	cmds := commands()
	if len(args) == 0 || isHelpFlag(args[0]) || args[0] == "help" && len(args) == 1 {
		if len(args) == 0 {
			printOverview(stderr, cmds)
			return errUsage
		}
		printOverview(stdout, cmds)
		return nil
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "version" {
		fmt.Fprintln(stdout, "glbctl", version.Version)
		return nil
	}
	if args[0] == "help" {
		args = append(args[1:], "--help")
	}
	// Find the longest command path that prefixes the arguments.
	var cmd *command
	var rest []string
	for i := range cmds {
		words := strings.Fields(cmds[i].path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			if cmd == nil || len(words) > len(strings.Fields(cmd.path)) {
				cmd, rest = &cmds[i], args[len(words):]
			}
		}
	}
	if cmd == nil {
		return groupUsage(args, cmds, stdout, stderr)
	}
	fs := flag.NewFlagSet("glbctl "+cmd.path, flag.ContinueOnError)
	do := cmd.flags(fs)
	// The flag package prints parse errors to its output and then calls
	// Usage: errors go to stderr, and the usage is printed once, below, on
	// the stream that suits the case.
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	positional, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, cmd, fs)
			return nil
		}
		fmt.Fprintln(stderr)
		printUsage(stderr, cmd, fs)
		return errUsage
	}
	e := base
	e.args = positional
	return do(ctx, e)
}

// isHelpFlag reports whether arg asks for help in a form the flag package
// accepts.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// printUsage prints a command's usage, its long help and its flags to w.
func printUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: glbctl %s %s\n\n%s\n", cmd.path, cmd.args, cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	fmt.Fprintln(w, "\nFlags:")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// groupUsage answers a command line that names no command. A group word
// ("table") with a help flag lists the group's subcommands on stdout; alone,
// or with a word that is no subcommand, it lists them on stderr as a usage
// error. Anything else is an unknown command.
func groupUsage(args []string, cmds []command, stdout, stderr io.Writer) error {
	group := args[0]
	var subs []command
	for _, c := range cmds {
		if strings.HasPrefix(c.path, group+" ") {
			subs = append(subs, c)
		}
	}
	if len(subs) == 0 {
		fmt.Fprintf(stderr, "glbctl: unknown command %q\n\n", group)
		printOverview(stderr, cmds)
		return errUsage
	}
	rest := args[1:]
	if len(rest) > 0 && slices.ContainsFunc(rest, isHelpFlag) {
		printGroup(stdout, group, subs)
		return nil
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "glbctl: %q needs a subcommand.\n\n", group)
	} else {
		fmt.Fprintf(stderr, "glbctl: %q is not a subcommand of %q.\n\n", rest[0], group)
	}
	printGroup(stderr, group, subs)
	return errUsage
}

func printGroup(w io.Writer, group string, subs []command) {
	fmt.Fprintf(w, "Usage: glbctl %s SUBCOMMAND [FLAGS]\n\nSubcommands:\n", group)
	for _, c := range subs {
		fmt.Fprintf(w, "  %-15s %s\n", c.path, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"glbctl %s SUBCOMMAND --help\" for a subcommand's flags.\n", group)
}

// parseInterspersed parses flags that may come after positional arguments
// ("glbctl drain proxy-2 --reason …"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func printOverview(w io.Writer, cmds []command) {
	var b strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-15s %s\n", c.path, c.summary)
	}
	fmt.Fprintf(w, overview, b.String())
}
