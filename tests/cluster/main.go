// serin-cluster: a real Kubernetes control plane on loopback for serin's real test tier.
//
// One binary, so the shared Kubernetes packages are compiled once. It has four modes:
//
//	serin-cluster up --dir D [--port N]   the supervisor: an embedded etcd, the
//	                                      kube-apiserver and kube-controller-manager as
//	                                      child processes of this same binary, and the
//	                                      node stand-in (see nodes.go), until SIGTERM
//	serin-cluster kube-apiserver ARGS     kube-apiserver's own command (cmd/kube-apiserver/app)
//	serin-cluster kube-controller-manager ARGS
//	                                      kube-controller-manager's own command
//
// The supervisor restarts a child that exits (as a kubelet restarts a static pod), so a
// test can kill the API server by the pid in D/kube-apiserver.pid and see it come back
// on the same etcd data. Everything here is glue around the peers' own packages.
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: serin-cluster up --dir DIR [--port N] | kube-apiserver ARGS | kube-controller-manager ARGS")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(os.Args[2:])
		os.Exit(cli.Run(cmd))
	case "up":
		if err := up(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serin-cluster:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "serin-cluster: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
