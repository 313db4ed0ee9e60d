package main

// The node stand-in: no kubelet or container runtime can run here, so this plays the
// part of the scheduler and the kubelets for pods, and nothing more. It keeps fake
// Nodes Ready, binds each pending pod to one of them (round robin), reports a bound pod
// Running and Ready with its containers started, and finishes the graceful deletion of
// a pod (what a kubelet does once the containers have stopped). Everything else, the
// ReplicaSets that create and delete pods, Deployment and DaemonSet status, endpoints,
// garbage collection, is the real kube-controller-manager.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

type nodes struct {
	client kubernetes.Interface
	names  []string
	next   atomic.Uint64
	ip     atomic.Uint64
}

func newNodes(kubeconfig string, n int) (*nodes, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "serin-cluster-nodes"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	s := &nodes{client: client}
	for i := 0; i < n; i++ {
		s.names = append(s.names, fmt.Sprintf("serin-node-%d", i))
	}
	return s, nil
}

func (s *nodes) ensureNode(ctx context.Context, name string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"serin.dev/stand-in":     "true",
			},
		},
	}
	_, err := s.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("10000"),
	}
	cur.Status.Capacity = capacity
	cur.Status.Allocatable = capacity
	cur.Status.Phase = corev1.NodeRunning
	cur.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "StandIn",
		Message: "serin-cluster's node stand-in", LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	cur.Status.NodeInfo.KubeletVersion = "stand-in"
	_, err = s.client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (s *nodes) waitNodes(ctx context.Context, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, n := range s.names {
			if err := s.ensureNode(ctx, n); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
}

func (s *nodes) podIP() string {
	n := s.ip.Add(1)
	return fmt.Sprintf("10.244.%d.%d", (n/250)%250, n%250+1)
}

func (s *nodes) sync(ctx context.Context, pod *corev1.Pod) error {
	pods := s.client.CoreV1().Pods(pod.Namespace)
	switch {
	case pod.DeletionTimestamp != nil:
		// The containers are gone at once: finish the deletion as a kubelet does.
		if pod.Spec.NodeName == "" {
			return nil // the API server deletes unbound pods itself
		}
		zero := int64(0)
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	case pod.Spec.NodeName == "":
		node := s.names[s.next.Add(1)%uint64(len(s.names))]
		err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	case pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "":
		now := metav1.Now()
		st := pod.Status.DeepCopy()
		st.Phase = corev1.PodRunning
		st.HostIP = "10.243.0.1"
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
		ip := s.podIP()
		st.PodIP = ip
		st.PodIPs = []corev1.PodIP{{IP: ip}}
		st.StartTime = &now
		st.Conditions = nil
		for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
		}
		st.InitContainerStatuses = nil
		for _, c := range pod.Spec.InitContainers {
			st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: now, FinishedAt: now}},
			})
		}
		st.ContainerStatuses = nil
		started := true
		for _, c := range pod.Spec.Containers {
			st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: &started,
				ContainerID: "stand-in://" + string(pod.UID) + "/" + c.Name,
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
		cp := pod.DeepCopy()
		cp.Status = *st
		_, err := pods.UpdateStatus(ctx, cp, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // a newer version of the pod is queued
		}
		return err
	}
	return nil
}

func (s *nodes) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(s.client, 0)
	informer := factory.Core().V1().Pods().Informer()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), informer.HasSynced)

	// Node heartbeats, so that anything reading the Ready condition sees a live node.
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for _, n := range s.names {
			_ = s.ensureNode(ctx, n)
		}
	}, 30*time.Second)

	worker := func() {
		for {
			key, quit := queue.Get()
			if quit {
				return
			}
			func() {
				defer queue.Done(key)
				obj, exists, err := informer.GetIndexer().GetByKey(key)
				if err != nil || !exists {
					queue.Forget(key)
					return
				}
				if err := s.sync(ctx, obj.(*corev1.Pod)); err != nil {
					if queue.NumRequeues(key) < 20 {
						queue.AddRateLimited(key)
						return
					}
				}
				queue.Forget(key)
			}()
		}
	}
	for i := 0; i < 8; i++ {
		go worker()
	}
	<-ctx.Done()
	queue.ShutDown()
}
