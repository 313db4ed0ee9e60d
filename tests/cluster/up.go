package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// child is a supervised process of this same binary, restarted when it exits.
type child struct {
	name string
	args []string
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	stop bool
	done chan struct{}
}

func (c *child) run(self string) {
	defer close(c.done)
	logPath := filepath.Join(c.dir, "logs", c.name+".log")
	pidPath := filepath.Join(c.dir, c.name+".pid")
	for restarts := 0; ; restarts++ {
		c.mu.Lock()
		if c.stop {
			c.mu.Unlock()
			return
		}
		log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			c.mu.Unlock()
			fmt.Fprintf(os.Stderr, "%s: log: %v\n", c.name, err)
			return
		}
		cmd := exec.Command(self, append([]string{c.name}, c.args...)...)
		cmd.Stdout, cmd.Stderr = log, log
		// The child dies with the supervisor, whatever kills the supervisor.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		if err == nil {
			c.cmd = cmd
			_ = os.WriteFile(pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
		}
		c.mu.Unlock()
		if err != nil {
			log.Close()
			fmt.Fprintf(os.Stderr, "%s: start: %v\n", c.name, err)
			return
		}
		state, _ := cmd.Process.Wait()
		fmt.Fprintf(log, "serin-cluster: %s exited: %v (restart %d)\n", c.name, state, restarts+1)
		log.Close()
		c.mu.Lock()
		stopping := c.stop
		c.mu.Unlock()
		if stopping {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *child) terminate() {
	c.mu.Lock()
	c.stop = true
	cmd := c.cmd
	c.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-c.done
	}
}

// waitReady polls the API server's /readyz with the admin certificate.
func waitReady(ctx context.Context, server, caFile, crt, key string) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert},
		}},
	}
	for i := 0; ; i++ {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/readyz did not answer ok: last error %v", server, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for certificates, kubeconfigs, etcd data, logs and pid files")
	port := fs.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0: a free one)")
	nodes := fs.Int("nodes", 1, "fake Nodes the stand-in keeps Ready")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	if err := os.MkdirAll(filepath.Join(*dir, "logs"), 0o700); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// Certificates: the CA, the API server's serving certificate, the clients.
	p, err := newPKI(*dir)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}
	servingCrt, servingKey, err := p.issue("apiserver", "kube-apiserver", nil,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		loopback, true)
	if err != nil {
		return err
	}
	adminCrt, adminKey, err := p.issue("admin", "serin-cluster-admin", []string{"system:masters"}, nil, nil, false)
	if err != nil {
		return err
	}
	kcmCrt, kcmKey, err := p.issue("kube-controller-manager", "system:kube-controller-manager", nil, nil, nil, false)
	if err != nil {
		return err
	}
	nodeCrt, nodeKey, err := p.issue("nodes", "serin-cluster-nodes", []string{"system:masters"}, nil, nil, false)
	if err != nil {
		return err
	}
	saPriv, saPub, err := p.serviceAccountKey()
	if err != nil {
		return err
	}

	// etcd, embedded in this process: it outlives API server restarts.
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = "serin-cluster"
	cfg.Dir = filepath.Join(*dir, "etcd")
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(*dir, "logs", "etcd.log")}
	cfg.UnsafeNoFsync = true
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return errors.New("etcd did not become ready in 60s")
	}

	if *port == 0 {
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)
	// The audit log records every request of the operators under test (not the
	// admin's, the node stand-in's or the controllers'), with user and user agent,
	// so that benchmarks can count an operator's own API requests.
	auditPolicy := filepath.Join(*dir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:masters", "system:serviceaccounts:kube-system"]
  - level: None
    users: ["system:kube-controller-manager", "system:apiserver", "system:anonymous"]
  - level: Metadata
`), 0o600); err != nil {
		return err
	}
	apiserverArgs := []string{
		"--etcd-servers=" + cu.String(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(*port),
		"--tls-cert-file=" + servingCrt,
		"--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + p.CAFile,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saPriv,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.0.0.0/16",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--audit-policy-file=" + auditPolicy,
		"--audit-log-path=" + filepath.Join(*dir, "logs", "audit.log"),
		"--audit-log-format=json",
		"--audit-log-maxsize=200",
		"--audit-log-maxbackup=1",
		"--cert-dir=" + filepath.Join(*dir, "pki", "apiserver-generated"),
		"--v=1",
	}
	kcmKubeconfig := filepath.Join(*dir, "kube-controller-manager.kubeconfig")
	if err := p.kubeconfig(kcmKubeconfig, server, "kube-controller-manager", kcmCrt, kcmKey); err != nil {
		return err
	}
	kcmArgs := []string{
		"--kubeconfig=" + kcmKubeconfig,
		"--authentication-kubeconfig=" + kcmKubeconfig,
		"--authorization-kubeconfig=" + kcmKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + saPriv,
		"--root-ca-file=" + p.CAFile,
		"--cluster-signing-cert-file=" + p.CAFile,
		"--cluster-signing-key-file=" + filepath.Join(p.dir, "ca.key"),
		// The controllers serin's behaviour depends on, running for real. Node
		// lifecycle is left out: the stand-in's Nodes have no kubelet heartbeat.
		"--controllers=" + "deployment-controller,replicaset-controller,daemonset-controller," +
			"garbage-collector-controller,namespace-controller,horizontal-pod-autoscaler-controller," +
			"serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller," +
			"endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller," +
			"disruption-controller,pod-garbage-collector-controller,clusterrole-aggregation-controller," +
			"statefulset-controller,job-controller,resourcequota-controller",
		"--horizontal-pod-autoscaler-sync-period=5s",
		"--v=1",
	}

	adminKubeconfig := filepath.Join(*dir, "kubeconfig")
	if err := p.kubeconfig(adminKubeconfig, server, "admin", adminCrt, adminKey); err != nil {
		return err
	}
	nodesKubeconfig := filepath.Join(*dir, "nodes.kubeconfig")
	if err := p.kubeconfig(nodesKubeconfig, server, "nodes", nodeCrt, nodeKey); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	api := &child{name: "kube-apiserver", args: apiserverArgs, dir: *dir, done: make(chan struct{})}
	go api.run(self)
	defer api.terminate()

	readyCtx, readyCancel := context.WithTimeout(ctx, 120*time.Second)
	err = waitReady(readyCtx, server, p.CAFile, adminCrt, adminKey)
	readyCancel()
	if err != nil {
		return err
	}

	kcm := &child{name: "kube-controller-manager", args: kcmArgs, dir: *dir, done: make(chan struct{})}
	go kcm.run(self)
	defer kcm.terminate()

	standIn, err := newNodes(nodesKubeconfig, *nodes)
	if err != nil {
		return err
	}
	standInDone := make(chan struct{})
	go func() {
		defer close(standInDone)
		standIn.run(ctx)
	}()
	if err := standIn.waitNodes(ctx, 60*time.Second); err != nil {
		return err
	}

	// Ready: the last file written, which scripts/cluster.sh waits for.
	info := fmt.Sprintf("server=%s\nkubeconfig=%s\netcd=%s\n", server, adminKubeconfig, cu.String())
	if err := os.WriteFile(filepath.Join(*dir, "ready"), []byte(info), 0o600); err != nil {
		return err
	}
	fmt.Printf("serin-cluster: ready at %s (kubeconfig %s)\n", server, adminKubeconfig)

	<-ctx.Done()
	fmt.Println("serin-cluster: stopping")
	<-standInDone
	return nil
}
