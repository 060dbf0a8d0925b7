package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestMain lets the help tests run the real main (exit code and all) by
// executing this test binary with GLBCTL_RUN_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("GLBCTL_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// glbctlExec runs glbctl's main in a child process and returns its
// streams and exit code.
func glbctlExec(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GLBCTL_RUN_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run glbctl %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// groups returns the group words of the command registry ("table") and
// their commands.
func groups() map[string][]command {
	g := map[string][]command{}
	for _, c := range commands() {
		if w := strings.Fields(c.path); len(w) > 1 {
			g[w[0]] = append(g[w[0]], c)
		}
	}
	return g
}

type helpCase struct {
	name       string
	args       []string
	wantCode   int
	wantStdout []string // each must appear exactly once
	wantStderr []string // each must appear exactly once
}

// helpCases builds the help cases from the command registry, so a new
// command or group is covered without editing the test.
func helpCases() []helpCase {
	var cases []helpCase
	for _, c := range commands() {
		words := strings.Fields(c.path)
		usage := "Usage: glbctl " + c.path + " "
		for _, h := range []string{"--help", "-h", "-help"} {
			cases = append(cases, helpCase{name: c.path + " " + h, args: append(slices.Clone(words), h),
				wantStdout: []string{usage, c.summary, "Flags:"}})
		}
		cases = append(cases, helpCase{name: "help " + c.path, args: append([]string{"help"}, words...),
			wantStdout: []string{usage}})
		cases = append(cases, helpCase{name: c.path + " with a bad flag", args: append(slices.Clone(words), "--no-such-flag"),
			wantCode: 2, wantStderr: []string{"flag provided but not defined: -no-such-flag", usage}})
	}
	for g, subs := range groups() {
		list := []string{"Usage: glbctl " + g + " SUBCOMMAND"}
		for _, c := range subs {
			list = append(list, "  "+c.path+" ")
			list = append(list, c.summary)
		}
		for _, h := range []string{"--help", "-h"} {
			cases = append(cases, helpCase{name: g + " " + h, args: []string{g, h}, wantStdout: list})
		}
		cases = append(cases, helpCase{name: "help " + g, args: []string{"help", g}, wantStdout: list})
		cases = append(cases, helpCase{name: g + " alone", args: []string{g}, wantCode: 2,
			wantStderr: append([]string{`"` + g + `" needs a subcommand`}, list...)})
		cases = append(cases, helpCase{name: g + " with an unknown subcommand", args: []string{g, "frobnicate"}, wantCode: 2,
			wantStderr: append([]string{`"frobnicate" is not a subcommand of "` + g + `"`}, list...)})
	}
	cases = append(cases,
		helpCase{name: "overview", args: []string{"--help"}, wantStdout: []string{"Usage:\n  glbctl COMMAND"}},
		helpCase{name: "no arguments", args: nil, wantCode: 2, wantStderr: []string{"Usage:\n  glbctl COMMAND"}},
		helpCase{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantStderr: []string{`unknown command "frobnicate"`}},
	)
	return cases
}

// TestHelp checks, for every command and group, that help is printed once,
// on the right stream, with the right exit code: help asked for goes to
// stdout with exit 0; a usage error goes to stderr with exit 2.
func TestHelp(t *testing.T) {
	for _, tc := range helpCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := glbctlExec(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout, stderr)
			}
			check := func(stream, got string, want []string) {
				if len(want) == 0 && got != "" {
					t.Errorf("%s should be empty, got:\n%s", stream, got)
				}
				for _, w := range want {
					if n := strings.Count(got, w); n != 1 {
						t.Errorf("%s has %q %d times, want once:\n%s", stream, w, n, got)
					}
				}
			}
			check("stdout", stdout, tc.wantStdout)
			check("stderr", stderr, tc.wantStderr)
		})
	}
}
