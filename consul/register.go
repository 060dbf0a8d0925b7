package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ServiceName is the Consul service every proxy host registers.
const ServiceName = "glb-proxy"

// Service is a glb-proxy instance's Consul registration: the service
// "glb-proxy" with Meta.cluster and Meta.table, and an HTTP check on the
// proxy's health endpoint. Run keeps it registered while the proxy runs.
type Service struct {
	// Agent is the local Consul agent, host:port or consul://host:port/…;
	// empty means 127.0.0.1:8500.
	Agent string
	// ID is the service instance ID; empty means "glb-proxy-ADDRESS-PORT".
	ID string
	// Address and Port are where the proxy serves (the address the
	// director's table lists). Address is required.
	Address string
	Port    int
	// Cluster and Table go into Meta.cluster and Meta.table.
	Cluster, Table string
	Tags           []string
	// CheckURL is the HTTP health check; empty means
	// http://ADDRESS:PORT/_glb/health.
	CheckURL string
	// CheckInterval and CheckTimeout default to 10s and 2s.
	CheckInterval, CheckTimeout time.Duration
	// DeregisterAfter removes the service once its check has been
	// critical this long (a proxy that died without deregistering); zero
	// means 10m, negative disables it.
	DeregisterAfter time.Duration
	// ResyncInterval is how often Run checks that the agent still has the
	// registration (an agent restarted with a fresh data directory loses
	// it); zero means 30s.
	ResyncInterval time.Duration
	Log            *slog.Logger
}

func (s *Service) validate() error {
	if s.Address == "" {
		return errors.New("consul registration: Address is required (the proxy host's address)")
	}
	if s.Port <= 0 || s.Port > 65535 {
		return fmt.Errorf("consul registration: port %d: use 1..65535", s.Port)
	}
	return nil
}

func (s *Service) id() string {
	if s.ID != "" {
		return s.ID
	}
	return fmt.Sprintf("%s-%s-%d", ServiceName, s.Address, s.Port)
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Service) client() (*api.Client, error) {
	addr := s.Agent
	if strings.HasPrefix(addr, "consul://") {
		u, err := url.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("consul agent %q: %w", addr, err)
		}
		addr = u.Host
	}
	if addr == "" {
		addr = "127.0.0.1:8500"
	}
	cfg := api.DefaultConfig()
	cfg.Address = addr
	return api.NewClient(cfg)
}

func (s *Service) registration() *api.AgentServiceRegistration {
	check := s.CheckURL
	if check == "" {
		check = "http://" + net.JoinHostPort(s.Address, strconv.Itoa(s.Port)) + "/_glb/health"
	}
	dereg := s.DeregisterAfter
	if dereg == 0 {
		dereg = 10 * time.Minute
	}
	c := &api.AgentServiceCheck{
		Name:     "glb-proxy health",
		HTTP:     check,
		Interval: orDefault(s.CheckInterval, 10*time.Second).String(),
		Timeout:  orDefault(s.CheckTimeout, 2*time.Second).String(),
	}
	if dereg > 0 {
		c.DeregisterCriticalServiceAfter = dereg.String()
	}
	meta := map[string]string{}
	if s.Cluster != "" {
		meta["cluster"] = s.Cluster
	}
	if s.Table != "" {
		meta["table"] = s.Table
	}
	return &api.AgentServiceRegistration{
		ID: s.id(), Name: ServiceName, Address: s.Address, Port: s.Port,
		Tags: s.Tags, Meta: meta, Check: c,
	}
}

// Register registers the service with the agent once.
func (s *Service) Register(ctx context.Context) error {
	if err := s.validate(); err != nil {
		return err
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := c.Agent().ServiceRegisterOpts(s.registration(), opts); err != nil {
		return fmt.Errorf("register %s with consul: %w", s.id(), err)
	}
	return nil
}

// Deregister removes the service from the agent.
func (s *Service) Deregister(ctx context.Context) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	if err := c.Agent().ServiceDeregisterOpts(s.id(), (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("deregister %s from consul: %w", s.id(), err)
	}
	return nil
}

// Run registers the service (replacing whatever an earlier run with the
// same ID left), checks every ResyncInterval that the agent still has it,
// registers it again when the agent answers that it does not (404: an
// agent restarted with a fresh data directory), and deregisters it when
// ctx ends. An agent that does not answer is asked again with backoff;
// that is logged once, and is not taken for a lost registration. Consul
// being down does not stop the proxy.
func (s *Service) Run(ctx context.Context) error {
	if err := s.validate(); err != nil {
		return err
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	bo := backoff{min: 500 * time.Millisecond, max: 30 * time.Second}
	every := orDefault(s.ResyncInterval, 30*time.Second)
	registered := false
	unanswered := false // the last check got no answer from the agent
loop:
	for {
		delay := every
		var err error
		if registered {
			_, _, err = c.Agent().Service(s.id(), (&api.QueryOptions{}).WithContext(ctx))
		}
		if ctx.Err() != nil {
			break
		}
		var status api.StatusError
		lost := errors.As(err, &status) && status.Code == http.StatusNotFound
		switch {
		case registered && err == nil:
			if unanswered {
				s.log().Info("consul answers again; the glb-proxy registration is in place", "id", s.id())
			}
			unanswered = false
			bo.reset()
		case registered && !lost:
			// The agent is unreachable, or refuses the check (ACL): it may
			// still hold the registration. Only a 404 means it lost it.
			if !unanswered {
				s.log().Warn("cannot check the glb-proxy registration with consul; checking again", "id", s.id(), "err", err)
			}
			unanswered = true
			delay = bo.next()
		default: // not registered yet, or lost (an agent restarted with a fresh data directory)
			if registered {
				s.log().Warn("consul lost the glb-proxy registration; registering again", "id", s.id())
			}
			registered, unanswered = false, false
			if err := s.Register(ctx); err != nil {
				if ctx.Err() != nil {
					break loop
				}
				s.log().Warn("consul registration failed; retrying", "id", s.id(), "err", err)
				delay = bo.next()
			} else {
				s.log().Info("registered with consul", "id", s.id(), "service", ServiceName, "cluster", s.Cluster, "table", s.Table)
				registered = true
				bo.reset()
			}
		}
		if !sleep(ctx, delay, nil) {
			break
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Deregister(dctx); err != nil {
		s.log().Warn("consul deregistration failed; the check will mark the proxy critical", "id", s.id(), "err", err)
		return err
	}
	s.log().Info("deregistered from consul", "id", s.id())
	return nil
}

// Proxy is a registered glb-proxy instance.
type Proxy struct {
	ID      string
	Address string
	Port    int
	Cluster string
	Table   string
}

// Proxies lists the glb-proxy instances that pass their checks (all of
// them with passingOnly false), optionally only one cluster's, with the
// catalog index for a blocking follow-up.
func Proxies(ctx context.Context, c *api.Client, cluster string, passingOnly bool, waitIndex uint64) ([]Proxy, uint64, error) {
	entries, meta, err := c.Health().Service(ServiceName, "", passingOnly, (&api.QueryOptions{WaitIndex: waitIndex}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("list %s instances: %w", ServiceName, err)
	}
	var out []Proxy
	for _, e := range entries {
		if e.Service == nil || cluster != "" && e.Service.Meta["cluster"] != cluster {
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		out = append(out, Proxy{ID: e.Service.ID, Address: addr, Port: e.Service.Port, Cluster: e.Service.Meta["cluster"], Table: e.Service.Meta["table"]})
	}
	return out, meta.LastIndex, nil
}
