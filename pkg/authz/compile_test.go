package authz

import (
	"testing"
)

func TestCompileErrors(t *testing.T) {
	ok := &policyPB{Name: "ns/ok", Action: allow, Rules: []*rulePB{{}}}
	rules := func(r ...*rulePB) []*policyPB {
		return []*policyPB{ok, ok, {Name: "ns/bad", Action: deny, Rules: append([]*rulePB{{}}, r...)}}
	}
	tests := []struct {
		name     string
		policies []*policyPB
		want     string
	}{
		{"nil policy", []*policyPB{ok, nil},
			`authorization[1] "": must not be null`},
		{"no name", []*policyPB{{Action: allow}},
			`authorization[0] "": name: must not be empty`},
		{"unknown action", []*policyPB{ok, {Name: "ns/bad", Action: 7}},
			`authorization[1] "ns/bad": action: unknown value 7`},
		{"bad CIDR", rules(from(&srcPB{Principals: list("*")}, &srcPB{IpBlocks: list("10.0.0.0/33")})),
			`authorization[2] "ns/bad": rules[1].from[1].ip_blocks[0]: "10.0.0.0/33": invalid CIDR`},
		{"bad CIDR address", rules(from(&srcPB{IpBlocks: list("10.0.0.0/8", "10.0.0/8")})),
			`authorization[2] "ns/bad": rules[1].from[0].ip_blocks[1]: "10.0.0/8": invalid CIDR`},
		{"bad IPv6 CIDR", rules(from(&srcPB{NotIpBlocks: list("2001:db8::/129")})),
			`authorization[2] "ns/bad": rules[1].from[0].not_ip_blocks[0]: "2001:db8::/129": invalid CIDR`},
		{"bad address", rules(from(&srcPB{NotIpBlocks: list("10.0.0.256")})),
			`authorization[2] "ns/bad": rules[1].from[0].not_ip_blocks[0]: "10.0.0.256": invalid IP address`},
		{"zoned address", rules(from(&srcPB{IpBlocks: list("fe80::1%eth0")})),
			`authorization[2] "ns/bad": rules[1].from[0].ip_blocks[0]: "fe80::1%eth0": invalid IP address`},
		{"hostname", rules(from(&srcPB{IpBlocks: list("example.com")})),
			`authorization[2] "ns/bad": rules[1].from[0].ip_blocks[0]: "example.com": invalid IP address`},
		{"empty principal", rules(from(&srcPB{Principals: list("a", "")})),
			`authorization[2] "ns/bad": rules[1].from[0].principals[1]: "": must not be empty`},
		{"bare spiffe prefix", rules(from(&srcPB{NotPrincipals: list("spiffe://")})),
			`authorization[2] "ns/bad": rules[1].from[0].not_principals[0]: "spiffe://": must not be empty`},
		{"empty namespace", rules(from(&srcPB{Namespaces: list("")})),
			`authorization[2] "ns/bad": rules[1].from[0].namespaces[0]: "": must not be empty`},
		{"empty not_namespace", rules(from(&srcPB{NotNamespaces: list("")})),
			`authorization[2] "ns/bad": rules[1].from[0].not_namespaces[0]: "": must not be empty`},
		{"empty source", rules(from(&srcPB{Namespaces: list("a")}, &srcPB{})),
			`authorization[2] "ns/bad": rules[1].from[1]: must set at least one field`},
		{"empty operation", rules(to(&opPB{})),
			`authorization[2] "ns/bad": rules[1].to[0]: must set at least one field`},
		{"port 0", rules(to(&opPB{Ports: []uint32{80, 0}})),
			`authorization[2] "ns/bad": rules[1].to[0].ports[1]: 0: must be 1-65535`},
		{"not_port too large", rules(to(&opPB{NotPorts: []uint32{65536}})),
			`authorization[2] "ns/bad": rules[1].to[0].not_ports[0]: 65536: must be 1-65535`},
		{"empty attribute name", rules(to(&opPB{Ports: []uint32{80}}, &opPB{Attributes: []*attrPB{{Name: "method", Values: list("a")}, {Values: list("a")}}})),
			`authorization[2] "ns/bad": rules[1].to[1].attributes[1].name: must not be empty`},
		{"attribute without values", rules(to(attr("method", nil, nil))),
			`authorization[2] "ns/bad": rules[1].to[0].attributes[0] "method": values or not_values is required`},
		{"empty attribute value", rules(to(attr("method", list("a", ""), nil))),
			`authorization[2] "ns/bad": rules[1].to[0].attributes[0].values[1]: "": must not be empty`},
		{"empty attribute not_value", rules(to(attr("method", nil, list("")))),
			`authorization[2] "ns/bad": rules[1].to[0].attributes[0].not_values[0]: "": must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Compile(tt.policies)
			if err == nil {
				t.Fatalf("Compile = %v, want error %s", e, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

// TestCompileAccepts lists forms that are valid though unusual.
func TestCompileAccepts(t *testing.T) {
	for name, r := range map[string]*rulePB{
		"CIDR with host bits":  from(&srcPB{IpBlocks: list("10.1.2.3/8")}),
		"mapped CIDR":          from(&srcPB{IpBlocks: list("::ffff:10.0.0.0/104")}),
		"mapped CIDR below 96": from(&srcPB{IpBlocks: list("::ffff:0.0.0.0/80")}),
		"port 65535":           to(&opPB{Ports: []uint32{65535}}),
		"not_values only":      to(attr("method", nil, list("*"))),
		"star in the middle":   from(&srcPB{Principals: list("td/ns/*/sa/x")}),
		"stars both sides":     from(&srcPB{Principals: list("*foo*")}),
	} {
		if _, err := Compile([]*policyPB{{Name: "ns/p", Rules: []*rulePB{r}}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestStringForms pins Istio's reading of the string forms, including the
// odd ones: a leading "*" wins over a trailing one, and a "*" in the middle
// is a literal.
func TestStringForms(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"abc", "", false},
		{"ab*", "abc", true},
		{"ab*", "ab", true},
		{"ab*", "xab", false},
		{"*bc", "abc", true},
		{"*bc", "bc", true},
		{"*bc", "bcd", false},
		{"*", "x", true},
		{"*", "", false},
		{"*b*", "ab*", true},
		{"*b*", "abc", false},
		{"a*c", "abc", false},
		{"a*c", "a*c", true},
	}
	for _, tt := range tests {
		m := newStrMatcher(tt.pattern)
		if got := m.match(tt.value); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}
