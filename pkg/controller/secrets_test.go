package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// testCredentialsLabel stands for a translator's Credentials.Label.
const testCredentialsLabel = "example.rosetta.dev/credentials"

func credSecret(name, password string, labelled bool) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", ResourceVersion: "1"},
		Data: map[string][]byte{"password": []byte(password)}}
	if labelled {
		s.Labels = map[string]string{testCredentialsLabel: "true", "other": "dropped"}
	}
	return s
}

func ref(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: "shop", Name: name}
}

func names(ss []*corev1.Secret) map[string]string {
	out := map[string]string{}
	for _, s := range ss {
		out[s.Name] = string(s.Data["password"])
	}
	return out
}

// TestCredentialSecretsReadByName: the named Secrets are read with a GET
// each and never listed or watched; an unlabelled, missing or forbidden one
// is not used; a failed read keeps what was in force; a refresh notices a
// change and a new reference is read at once; only the credentials labels
// are kept.
func TestCredentialSecretsReadByName(t *testing.T) {
	kc := fake.NewClientset(credSecret("auth", "one", true), credSecret("plain", "x", false))
	forbid := map[string]bool{"secret-of-another-app": true}
	var broken bool
	kc.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.GetAction).GetName()
		gr := schema.GroupResource{Resource: "secrets"}
		switch {
		case broken:
			return true, nil, errors.New("connection refused")
		case forbid[name]:
			return true, nil, apierrors.NewForbidden(gr, name, errors.New("no role"))
		}
		return false, nil, nil
	})
	r := &credentialSecrets{client: kc.CoreV1(), changed: func() {}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		labels: []string{testCredentialsLabel}}
	ctx := context.Background()
	refs := map[types.NamespacedName]bool{ref("auth"): true, ref("plain"): true, ref("missing"): true, ref("secret-of-another-app"): true}

	read := r.get(ctx, refs)
	if got := names(read); len(got) != 1 || got["auth"] != "one" {
		t.Fatalf("read %v, want only auth=one", got)
	}
	if l := read[0].Labels; len(l) != 1 || l[testCredentialsLabel] != "true" {
		t.Fatalf("kept labels %v, want only %s", l, testCredentialsLabel)
	}
	s := credSecret("auth", "two", true)
	s.ResourceVersion = "2"
	if _, err := kc.CoreV1().Secrets("shop").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := names(r.get(ctx, refs)); got["auth"] != "one" {
		t.Fatalf("a known Secret was read again outside refresh: %v", got)
	}
	broken = true
	if r.reread(ctx) || names(r.get(ctx, refs))["auth"] != "one" {
		t.Fatal("a failed read dropped or changed the credentials in force")
	}
	broken = false
	if !r.reread(ctx) {
		t.Fatal("refresh did not notice the changed Secret")
	}
	if got := names(r.get(ctx, refs)); got["auth"] != "two" {
		t.Fatalf("after refresh: %v", got)
	}
	if r.reread(ctx) {
		t.Fatal("refresh reported a change when nothing changed")
	}
	for _, a := range kc.Actions() {
		if a.GetResource().Resource == "secrets" && a.GetVerb() != "get" && a.GetVerb() != "update" {
			t.Errorf("the reader did %s on secrets; only get is granted", a.GetVerb())
		}
	}
	if len(r.get(ctx, nil)) != 0 || len(r.byKey) != 0 {
		t.Fatal("Secrets no longer named are kept")
	}
}
