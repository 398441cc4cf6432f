package dnstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DnsmasqConfig is the zone a dnsmasq instance serves. Names should lie
// under LocalDomain: dnsmasq answers NXDOMAIN for unknown names there, and
// never forwards a query anywhere.
type DnsmasqConfig struct {
	// Hosts maps names to their IPv4 and IPv6 addresses (an addn-hosts
	// file, changeable with SetHosts).
	Hosts map[string][]string
	// SRV records (fixed for the process's life).
	SRV []DnsmasqSRV
	// TTL of every answer, in seconds (--local-ttl; 0 is dnsmasq's 0).
	TTL uint32
}

// DnsmasqSRV is one --srv-host record.
type DnsmasqSRV struct {
	Name, Target           string
	Port, Priority, Weight uint16
}

// LocalDomain is the domain dnsmasq serves from local data only.
const LocalDomain = "test"

// Dnsmasq is a dnsmasq process serving a DnsmasqConfig on a loopback port,
// over UDP and TCP.
type Dnsmasq struct {
	addr  string
	hosts string // the addn-hosts file
	cmd   *exec.Cmd
	out   *lockedBuffer
	done  chan struct{}
}

// StartDnsmasq starts dnsmasq (found on PATH or in /usr/sbin) with cfg on
// a free 127.0.0.1 port and waits until it answers; it is killed at the
// test's cleanup. The test is skipped when dnsmasq is not installed.
func StartDnsmasq(t testing.TB, cfg DnsmasqConfig) *Dnsmasq {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/dnsmasq"); serr != nil {
			t.Skipf("dnstest: dnsmasq is not installed: %v", err)
		}
		bin = "/usr/sbin/dnsmasq"
	}
	dir := t.TempDir()
	d := &Dnsmasq{hosts: filepath.Join(dir, "hosts")}
	if err := writeHosts(d.hosts, cfg.Hosts); err != nil {
		t.Fatalf("dnstest: dnsmasq hosts: %v", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		d.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = d.start(bin, port, cfg); lastErr == nil {
			t.Cleanup(d.stop)
			return d
		}
	}
	t.Fatalf("dnstest: start dnsmasq: %v", lastErr)
	return nil
}

func (d *Dnsmasq) start(bin string, port int, cfg DnsmasqConfig) error {
	args := []string{
		"--keep-in-foreground",
		"--conf-file=/dev/null", // not the system's configuration
		"--port=" + strconv.Itoa(port),
		"--listen-address=127.0.0.1",
		"--bind-interfaces",
		"--no-resolv", "--no-hosts", "--no-poll",
		"--addn-hosts=" + d.hosts,
		"--local=/" + LocalDomain + "/",
		"--local-ttl=" + strconv.FormatUint(uint64(cfg.TTL), 10),
		"--pid-file=", // none
		"--log-facility=-",
		"--cache-size=0",
	}
	// Run as ourselves: as root dnsmasq would otherwise drop to nobody and
	// no longer read the hosts file in our temporary directory.
	if u, err := user.Current(); err == nil {
		args = append(args, "--user="+u.Username)
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			args = append(args, "--group="+g.Name)
		}
	}
	for _, s := range cfg.SRV {
		args = append(args, fmt.Sprintf("--srv-host=%s,%s,%d,%d,%d",
			strings.TrimSuffix(s.Name, "."), strings.TrimSuffix(s.Target, "."), s.Port, s.Priority, s.Weight))
	}
	d.out = &lockedBuffer{}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		d.cmd.Wait()
	}()
	// Ready when it answers over UDP and TCP.
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if d.answers("udp") && d.answers("tcp") {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("dnsmasq exited: %s", d.out.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			d.stop()
			return fmt.Errorf("dnsmasq on %s not answering: %s", d.addr, d.out.String())
		}
	}
}

func (d *Dnsmasq) answers(network string) bool {
	m := new(dns.Msg)
	m.SetQuestion("ready."+LocalDomain+".", dns.TypeA)
	c := &dns.Client{Net: network, Timeout: 200 * time.Millisecond}
	_, _, err := c.Exchange(m, d.addr)
	return err == nil
}

// Addr returns the host:port dnsmasq listens on.
func (d *Dnsmasq) Addr() string { return d.addr }

// SetHosts replaces the host records and makes dnsmasq read them again
// (SIGHUP), waiting until it answers with the new ones.
func (d *Dnsmasq) SetHosts(t testing.TB, hosts map[string][]string) {
	t.Helper()
	// dnsmasq logs the re-read; wait for it rather than for time. The
	// reads are counted before the signal: a busy machine's dnsmasq could
	// re-read before a count taken after it, and the wait then never ended.
	reads := strings.Count(d.out.String(), "read "+d.hosts)
	if err := writeHosts(d.hosts, hosts); err != nil {
		t.Fatalf("dnstest: dnsmasq hosts: %v", err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("dnstest: dnsmasq SIGHUP: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !d.reread(reads) {
		if time.Now().After(deadline) {
			t.Fatalf("dnstest: dnsmasq did not re-read %s: %s", d.hosts, d.out.String())
		}
		<-tick.C
	}
}

// reread reports whether dnsmasq has logged more reads of the hosts file
// than before.
func (d *Dnsmasq) reread(before int) bool {
	return strings.Count(d.out.String(), "read "+d.hosts) > before
}

// Log returns what dnsmasq wrote so far.
func (d *Dnsmasq) Log() string { return d.out.String() }

func (d *Dnsmasq) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.done
}

func writeHosts(path string, hosts map[string][]string) error {
	names := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		for _, ip := range hosts[n] {
			fmt.Fprintf(&b, "%s %s\n", ip, strings.TrimSuffix(n, "."))
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1 at the
// time of the call.
func freePort() (int, error) {
	var err error
	// The UDP port the kernel picks may be taken for TCP: try another.
	for range 20 {
		var pc net.PacketConn
		var l net.Listener
		if pc, l, err = listenPair("127.0.0.1:0"); err == nil {
			port := pc.LocalAddr().(*net.UDPAddr).Port
			pc.Close()
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("reserve port: %w", err)
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
