package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"go.opentelemetry.io/otel/trace"

	"github.com/smartroute/smartroute/overload"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// GRPCBalancerName is the name the balancer is registered under, the key
// in a service config's loadBalancingConfig.
const GRPCBalancerName = "smartroute"

// RegisterGRPCBalancer registers the "smartroute" balancer with gRPC, so
// that a service config can select it:
//
//	client.RegisterGRPCBalancer()
//	conn, err := grpc.NewClient("etcd:///api",
//		grpc.WithResolvers(resolver.NewGRPCBuilder(etcd)),
//		grpc.WithDefaultServiceConfig(client.GRPCServiceConfig(client.LeastLatency)),
//		grpc.WithTransportCredentials(creds))
//
// Routing settings come from the service config (GRPCConfig); opts set
// what is per process: WithLogger, WithRegisterer, WithPerEndpointMetrics.
// gRPC keeps registrations in a global map, so call it once at start-up,
// before dialling (later calls replace the earlier registration).
func RegisterGRPCBalancer(opts ...Option) {
	balancer.Register(grpcBuilder{opts: opts})
}

// GRPCServiceConfig returns a service config that selects the smartroute
// balancer with policy.
func GRPCServiceConfig(policy Policy) string {
	return fmt.Sprintf(`{"loadBalancingConfig":[{%q:{"policy":%q}}]}`, GRPCBalancerName, policy)
}

type grpcBuilder struct{ opts []Option }

func (grpcBuilder) Name() string { return GRPCBalancerName }

// ParseConfig validates the balancer's service-config entry, naming the
// field at fault.
func (grpcBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return parseGRPCConfig(js)
}

func (bb grpcBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &grpcBalancer{
		ClientConn: cc,
		service:    opts.Target.Endpoint(),
		procOpts:   bb.opts,
		kick:       make(chan struct{}, 1),
	}
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// grpcBalancer owns the choice of endpoint and leaves connection
// management to endpointsharding with a pickfirst child per endpoint, as
// grpc-go's least_request does. It shares the HTTP client's table and
// policies: health comes from the children's connectivity (which includes
// gRPC's client-side health checking when the service config enables it)
// and from the prober; latency from the prober and the time from pick to
// Done.
type grpcBalancer struct {
	pubMu sync.Mutex // one publication at a time: UpdateState and republish

	balancer.ClientConn // intercepts UpdateState from the child
	child               balancer.Balancer
	service             string
	procOpts            []Option

	mu     sync.Mutex
	cfgJS  string // the configuration the table was built with
	table  *table
	prober *probe.Prober
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  bool // some child is READY: our picker is in charge
	closed bool
	kick   chan struct{}

	// lastSet is the latest non-empty resolver state (gRPC's serializer
	// only): what the children keep through the empty-set grace.
	lastSet grpcresolver.State
}

func (b *grpcBalancer) UpdateClientConnState(ccs balancer.ClientConnState) error {
	cfg, _ := ccs.BalancerConfig.(*GRPCConfig)
	if cfg == nil {
		cfg = &GRPCConfig{}
	}
	if err := b.configure(cfg); err != nil {
		return fmt.Errorf("%w: %v", balancer.ErrBadResolverState, err)
	}
	eps := make([]resolver.Endpoint, 0, len(ccs.ResolverState.Endpoints))
	for _, e := range ccs.ResolverState.Endpoints {
		if ep, ok := endpointFromGRPC(e); ok {
			eps = append(eps, ep)
		}
	}
	b.mu.Lock()
	t := b.table
	b.mu.Unlock()
	t.update(resolver.State{Endpoints: eps})
	rs := ccs.ResolverState
	switch {
	case len(rs.Endpoints) > 0:
		b.lastSet = rs
	case t.holding() && len(b.lastSet.Endpoints) > 0:
		// The table keeps the last set for the empty-set grace
		// (WithEmptySetGrace): so do the children, or endpointsharding
		// would close every connection the table still routes to. When
		// the grace ends, the table drops the set and asks the resolver
		// for a fresh state (ResolveNow), which closes them.
		rs = b.lastSet
	}
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		// Let pickfirst children report client-side health checks.
		ResolverState: pickfirst.EnableHealthListener(rs),
	})
}

// configure (re)builds the table, prober and background work when the
// configuration changed.
func (b *grpcBalancer) configure(gc *GRPCConfig) error {
	js, _ := json.Marshal(gc)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("balancer closed")
	}
	if b.table != nil && string(js) == b.cfgJS {
		return nil
	}
	opts, pc, err := gc.options()
	if err != nil {
		return err
	}
	cfg := defaultConfig()
	for _, o := range append(append([]Option(nil), b.procOpts...), opts...) {
		o(&cfg)
	}
	cfg.derive()
	cfg.requireConnected = true
	cfg.hashHeader = gc.HashHeader
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	m, err := newClientMetrics(cfg.registerer, b.service, cfg.policy, cfg.perEndpointMetrics)
	if err != nil {
		return err
	}
	b.stopLocked()
	t := newTable(&cfg, m)
	if err := t.setGuard(b.service); err != nil {
		return err
	}
	if old := b.table; old != nil {
		old.ov.guard.Retain(nil) // its endpoints leave the metrics; the new guard counts them
		t.update(resolver.State{Endpoints: old.resolverSet()})
		t.adoptChildren(old)
	}
	var setAddrs func([]string)
	if chk := pc.checker(); chk != nil {
		b.prober = probe.New(chk, append([]probe.Option{probe.WithLogger(cfg.logger)}, pc.probeOptions()...)...)
		b.prober.Subscribe(t.onProbe)
		setAddrs = b.prober.SetAddrs
		b.prober.SetAddrs(t.addrs())
	}
	t.onMembership = func(addrs []string) {
		if setAddrs != nil {
			setAddrs(addrs)
		}
		if len(addrs) == 0 {
			// Possibly the empty-set grace ending: ask for the resolver's
			// state so the children follow the table.
			b.ClientConn.ResolveNow(grpcresolver.ResolveNowOptions{})
		}
	}
	t.onRebuild = func() {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	b.table, b.cfgJS = t, string(js)
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(3)
	go func() {
		defer b.wg.Done()
		t.run(ctx)
	}()
	go func() {
		defer b.wg.Done()
		t.clock.run(ctx)
	}()
	go func() {
		defer b.wg.Done()
		b.republish(ctx)
	}()
	return nil
}

// republish hands gRPC a fresh picker after the table changed by itself (an
// ejection ended, a probe result), so RPCs queued for lack of an eligible
// endpoint are picked again.
func (b *grpcBalancer) republish(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.pubMu.Lock()
		b.mu.Lock()
		ready, t := b.ready, b.table
		b.mu.Unlock()
		if ready {
			b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: &grpcPicker{t: t}})
		}
		b.pubMu.Unlock()
	}
}

// stopLocked ends the current table's background work and prober.
func (b *grpcBalancer) stopLocked() {
	if b.cancel != nil {
		b.cancel()
		b.mu.Unlock()
		b.wg.Wait()
		b.mu.Lock()
		b.cancel = nil
	}
	if b.prober != nil {
		b.prober.Close()
		b.prober = nil
	}
}

// UpdateState receives the children's aggregated state from
// endpointsharding and publishes our picker over the ready ones.
func (b *grpcBalancer) UpdateState(state balancer.State) {
	b.mu.Lock()
	t := b.table
	b.mu.Unlock()
	if t == nil {
		b.ClientConn.UpdateState(state)
		return
	}
	// pubMu keeps republish from publishing a READY it read before this
	// update after this update's own state.
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	ready := t.setChildren(endpointsharding.ChildStatesFromPicker(state.Picker))
	b.mu.Lock()
	b.ready = ready
	b.mu.Unlock()
	if !ready {
		// Nothing connected: endpointsharding's own picker queues or
		// fails RPCs as the children's states say.
		b.ClientConn.UpdateState(state)
		return
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: &grpcPicker{t: t}})
}

func (b *grpcBalancer) ResolverError(err error) {
	b.mu.Lock()
	t := b.table
	b.mu.Unlock()
	if t != nil {
		t.update(resolver.State{Err: err})
	}
	b.child.ResolverError(err)
}

func (b *grpcBalancer) UpdateSubConnState(sc balancer.SubConn, st balancer.SubConnState) {
	// Not called: subchannels belong to the pickfirst children.
}

func (b *grpcBalancer) ExitIdle() { b.child.ExitIdle() }

func (b *grpcBalancer) Close() {
	b.mu.Lock()
	b.closed = true
	b.stopLocked()
	b.mu.Unlock()
	b.child.Close()
}

// endpointFromGRPC reads a gRPC resolver endpoint back into ours, with the
// attributes the smartroute resolver attached (weight, zone, labels,
// draining); endpoints from other resolvers get the defaults.
func endpointFromGRPC(e grpcresolver.Endpoint) (resolver.Endpoint, bool) {
	if ep, ok := resolver.EndpointFromGRPC(e); ok {
		return ep, true
	}
	if len(e.Addresses) == 0 {
		return resolver.Endpoint{}, false
	}
	return resolver.Endpoint{Addr: e.Addresses[0].Addr}, true
}

// grpcChild is a pickfirst child's latest state.
type grpcChild struct {
	picker balancer.Picker
	state  connectivity.State
}

// setChildren records the children's pickers and states; it reports
// whether any child is READY. endpointsharding hands over every child on
// every change of one, so this is O(children) per call and has to be cheap:
// unchanged children cost a comparison, and the snapshot is rebuilt only
// when a child's READY-ness changed, at most every rebuildMinInterval
// (at start-up, a thousand children become READY one by one).
func (t *table) setChildren(children []endpointsharding.ChildState) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ready, changed, first := false, false, false
	now := t.cfg.now()
	for _, ch := range children {
		st := ch.State.ConnectivityState
		if st == connectivity.Ready {
			ready = true
		}
		if len(ch.Endpoint.Addresses) == 0 {
			continue
		}
		ep, ok := t.endpoints[ch.Endpoint.Addresses[0].Addr]
		if !ok {
			continue
		}
		old := ep.child.Load()
		if old != nil && old.picker == ch.State.Picker && old.state == st {
			continue
		}
		ep.child.Store(&grpcChild{picker: ch.State.Picker, state: st})
		wasReady := old != nil && old.state == connectivity.Ready
		if wasReady == (st == connectivity.Ready) {
			continue // READY-ness unchanged: picks read the child as they go
		}
		changed = true
		if st == connectivity.Ready {
			ep.activeSince.Store(now) // (re)connected: slow start
			first = first || t.snapshot().empty()
		}
	}
	switch {
	case first:
		t.rebuildLocked(now) // the first connection: no waiting for it
	case changed:
		t.rebuildSoonLocked(now)
	}
	return ready
}

// adoptChildren carries the children's states over to a rebuilt table.
func (t *table) adoptChildren(old *table) {
	old.mu.Lock()
	defer old.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, ep := range old.endpoints {
		if nep, ok := t.endpoints[addr]; ok {
			nep.child.Store(ep.child.Load())
		}
	}
	t.rebuildLocked(t.cfg.now())
}

// resolverSet returns the table's endpoints as the resolver delivered them.
func (t *table) resolverSet() []resolver.Endpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]resolver.Endpoint, len(t.sorted))
	for i, ep := range t.sorted {
		out[i] = *ep.attrs.Load()
	}
	return out
}

// grpcPicker picks with the table's current snapshot and delegates to the
// chosen endpoint's pickfirst child. Its Done callback feeds the passive
// figures: requests waiting, latency, failures, the server's ORCA load
// report.
type grpcPicker struct{ t *table }

// errNoEligible is returned when endpoints are connected but none may
// take the RPC (draining, filtered out). It is not a status error: gRPC
// waits for a new picker for wait-for-ready RPCs and fails the others with
// UNAVAILABLE and this message.
var errNoEligible = errors.New("smartroute: no eligible endpoint")

// notReadyRetries bounds the picks that skip an endpoint whose connection
// stopped being READY since the snapshot was built.
const notReadyRetries = 3

func (p *grpcPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	t := p.t
	var pr pickRequest
	pr.now = t.clock.Now()
	if t.cfg.canary != nil || t.cfg.hashHeader != "" {
		md, _ := metadata.FromOutgoingContext(info.Ctx)
		if c := t.cfg.canary; c != nil {
			if v, _ := info.Ctx.Value(canaryKey{}).(bool); v {
				pr.canary = true
			} else if vals := md.Get(c.header()); len(vals) > 0 {
				pr.canary, _ = strconv.ParseBool(vals[0])
			}
		}
		if h := t.cfg.hashHeader; h != "" {
			if vals := md.Get(h); len(vals) > 0 && vals[0] != "" {
				pr.hash, pr.hasHash = hashKey(vals[0]), true
			}
		}
	}
	stream := t.streaming(info.FullMethodName)
	var adm *admission // nil: not guarded
	if g := t.ov.guard; g != nil && !stream {
		a, err := acquireService(noWait, g, overload.IsRetryContext(info.Ctx))
		if err != nil {
			return balancer.PickResult{}, err // a status error (Unavailable): the RPC fails at once
		}
		adm = &a
	}
	s := t.snapshot()
	var ep *endpoint
	var child *grpcChild
	for try := 0; ; try++ {
		ep = s.pick(&pr)
		if ep == nil {
			adm.releaseIf()
			return balancer.PickResult{}, errNoEligible
		}
		child = ep.child.Load()
		if child != nil && child.state == connectivity.Ready || try == notReadyRetries {
			err := adm.admitEndpoint(s, ep)
			if err == nil {
				break
			}
			if try == notReadyRetries {
				ep.hot.exploring.Store(false)
				adm.releaseIf()
				return balancer.PickResult{}, err
			}
		}
		ep.hot.exploring.Store(false) // picked, not sent
		pr.addTried(ep)               // its connection just went down, or it refused: another one
	}
	if child == nil || child.picker == nil {
		ep.hot.exploring.Store(false)
		adm.releaseIf()
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	res, err := child.picker.Pick(info)
	if err != nil {
		ep.hot.exploring.Store(false)
		adm.releaseIf()
		return res, err
	}
	if span := trace.SpanFromContext(info.Ctx); span.IsRecording() {
		t.tracePick(span, ep, pr.explored, info.FullMethodName, &res) // trace.go
	}
	d := ep.dones.Load() // its callbacks
	if d == nil {
		d = ep.newGRPCDones(t)
	}
	// A stream's length is the caller's business: it is neither a latency
	// sample nor a request waiting on the endpoint.
	done := d.stream
	if !stream {
		done = d.untimed
		h := ep.hot
		if h.waiting.Add(1) == 1 && h.progressAt.Load() != pr.now {
			h.progressAt.Store(pr.now)
		}
		if pr.now-h.timedAt.Load() >= int64(coarseTick) && h.timedStart.CompareAndSwap(0, -1) {
			// Timed precisely, one RPC at a time and at most one per
			// tick: reading the precise clock costs more than a pick,
			// and an estimate gains nothing from more than a thousand
			// samples a second.
			h.timedAt.Store(pr.now)
			h.timedStart.Store(t.cfg.now())
			done = d.timed
		}
	}
	chainDone(&res, done)
	adm.chain(&res)
	return res, nil
}

// chainDone makes done res's Done, calling the Done res had (if any) after
// it; only then does a pick allocate.
func chainDone(res *balancer.PickResult, done func(balancer.DoneInfo)) {
	if next := res.Done; next != nil {
		res.Done = doneThen(done, next)
		return
	}
	res.Done = done
}

// doneThen returns a Done calling first, then next.
func doneThen(first, next func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	return func(di balancer.DoneInfo) {
		first(di)
		next(di)
	}
}

// grpcDones are an endpoint's Done callbacks, made once so that a pick
// allocates nothing.
type grpcDones struct {
	t                      *table
	ep                     *endpoint
	untimed, timed, stream func(balancer.DoneInfo)
}

// newGRPCDones makes ep's callbacks on its first pick (unless another pick
// just did) and returns them; later picks load them from ep.dones.
func (ep *endpoint) newGRPCDones(t *table) *grpcDones {
	d := &grpcDones{t: t, ep: ep}
	d.untimed, d.timed, d.stream = d.doneUntimed, d.doneTimed, d.doneStream
	if !ep.dones.CompareAndSwap(nil, d) {
		return ep.dones.Load()
	}
	return d
}

// doneUntimed records a unary RPC whose latency was not timed; gRPC calls
// it once per pick.
func (d *grpcDones) doneUntimed(di balancer.DoneInfo) {
	now := d.t.clock.Now()
	d.ep.hot.answered(now)
	d.record(&di, 0, now)
}

// doneTimed records a unary RPC timed precisely, with its latency.
func (d *grpcDones) doneTimed(di balancer.DoneInfo) {
	t, h := d.t, d.ep.hot
	now := t.clock.Now()
	sample := time.Duration(t.cfg.now() - h.timedStart.Load())
	h.timedStart.Store(0)
	h.answered(now)
	d.record(&di, sample, now)
}

// record records a unary RPC's outcome, its latency sample (0: none) and
// the server's load report, once its answer counted as answered.
func (d *grpcDones) record(di *balancer.DoneInfo, sample time.Duration, now int64) {
	// gRPC also calls Done, without an error, for a pick it did not use
	// (the transport was not ready and it picks again): that says
	// nothing of the endpoint and is no latency sample.
	if di.Err == nil && !di.BytesSent && !di.BytesReceived {
		return
	}
	if di.ServerLoad != nil {
		d.t.orcaReport(d.ep, di.ServerLoad, now)
	}
	o := outcomeSuccess
	if di.Err != nil {
		o = grpcOutcome(*di)
	}
	d.t.observe(d.ep, o, sample, now)
}

// doneStream records how a stream ended: failures count against the
// endpoint; its length is no sample.
func (d *grpcDones) doneStream(di balancer.DoneInfo) {
	if di.Err == nil && !di.BytesSent && !di.BytesReceived {
		return
	}
	if o := grpcOutcome(di); o == outcomeFailure {
		d.t.observe(d.ep, o, 0, d.t.clock.Now())
	}
}

// grpcOutcome classifies a finished RPC for the endpoint's record, by the
// same rule as HTTP attempts: transport failures and running out of time
// waiting on it count against the endpoint, the server's application
// errors do not, a server refusing work to protect itself
// (ResourceExhausted) is busy, not broken, and cancellations say nothing.
func grpcOutcome(di balancer.DoneInfo) outcome {
	if di.Err == nil {
		return outcomeSuccess
	}
	switch status.Code(di.Err) {
	case codes.Canceled:
		return outcomeNeutral
	case codes.ResourceExhausted:
		return outcomeBusy
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown:
		if rejected(di.Err) {
			return outcomeNeutral // overload protection's refusal: it never left
		}
		return outcomeFailure
	}
	return outcomeSuccess
}
