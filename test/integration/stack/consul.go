package stack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/hashicorp/consul/api"

	"github.com/glb-project/glb/consul/consultest"
)

// consulServer is the Consul test server (consul/consultest, in this
// process, on loopback) made reachable at UpstreamIP:8500 by a TCP relay
// whose listener lives in the upstream namespace.
type consulServer struct {
	srv   *consultest.Server
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// ConsulClient is a Consul API client of the stack's Consul test server,
// for this process (nil without Consul mode).
func (s *Stack) ConsulClient() (*api.Client, error) {
	if s.consul == nil {
		return nil, errors.New("stack: not in Consul mode")
	}
	return api.NewClient(s.consul.srv.Config())
}

// StopConsul takes the Consul test server down (its data stays), as an
// outage would; StartConsul brings it back on the same address.
func (s *Stack) StopConsul() { s.consul.srv.Stop() }

// StartConsul restarts the Consul test server after StopConsul.
func (s *Stack) StartConsul() error { return s.consul.srv.Start() }

// ConsulURL is the --state URL of Consul mode.
func ConsulURL() string { return fmt.Sprintf("consul://%s:%d/glb", UpstreamIP, ConsulPort) }

func (s *Stack) startConsul() {
	tb := s.tb
	tb.Helper()
	c := &consulServer{srv: &consultest.Server{}, conns: map[net.Conn]struct{}{}}
	if err := c.srv.Start(); err != nil {
		tb.Fatalf("stack: start the Consul test server: %v", err)
	}
	tb.Cleanup(c.srv.Stop)
	if err := s.Upstream.Do(tb, func() error {
		var err error
		c.ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", UpstreamIP, ConsulPort))
		return err
	}); err != nil {
		tb.Fatalf("stack: listen for Consul in %s: %v", s.Upstream.Name, err)
	}
	tb.Cleanup(c.close)
	go c.serve()
	s.consul = c
	s.State = ConsulURL()
	s.writeFile(s.StateFile, string(s.TableConfig()), 0o644)
	if out, err := s.Ctl("state", "import", s.StateFile); err != nil {
		tb.Fatalf("stack: import the state into Consul: %v\n%s", err, out)
	}
}

func (c *consulServer) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.relay(in)
	}
}

// relay copies one connection to the test server and back. It runs on an
// ordinary goroutine, so its dial happens in this process's namespace,
// where the test server listens.
func (c *consulServer) relay(in net.Conn) {
	out, err := net.Dial("tcp", c.srv.Addr())
	if err != nil {
		in.Close()
		return
	}
	c.mu.Lock()
	c.conns[in], c.conns[out] = struct{}{}, struct{}{}
	c.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(out, in); done <- struct{}{} }()
	go func() { io.Copy(in, out); done <- struct{}{} }()
	<-done
	in.Close()
	out.Close()
	<-done
	c.mu.Lock()
	delete(c.conns, in)
	delete(c.conns, out)
	c.mu.Unlock()
}

func (c *consulServer) close() {
	c.ln.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
	}
}
