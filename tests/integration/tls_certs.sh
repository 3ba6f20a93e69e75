#!/bin/sh
# tls_certs.sh DIR: test certificates, made at test time with the openssl
# command (no key is ever committed), valid for 2 days:
#   ca.{crt,key}            the CA every member and client trusts
#   server.{crt,key}        serverAuth+clientAuth, SAN IP:127.0.0.1 DNS:localhost (client and peer ports)
#   client.{crt,key}        clientAuth, CN=root, signed by ca
#   revoked.{crt,key}, ca.crl  a client certificate of ca, revoked by ca.crl
#   foreign-ca.*, foreign.{crt,key}  a client certificate from another CA
#   other.{crt,key}         serverAuth+clientAuth from ca, SAN IP:127.0.0.2 (wrong host for 127.0.0.1)
set -e
D=$1; mkdir -p "$D"; cd "$D"
cat > ca.cnf <<'C'
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[srv]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[other]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.2
[cli]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
C
mkca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.crt -days 2 -subj "/CN=$1" -config ca.cnf -extensions v3_ca 2>/dev/null; }
mk() { # name ca ext cn
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key -out $1.csr -subj "/CN=$4" -config ca.cnf 2>/dev/null
  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -out $1.crt -days 2 -extfile ca.cnf -extensions $3 2>/dev/null
}
mkca ca; mkca foreign-ca
mk server ca srv server; mk other ca other other; mk client ca cli root; mk revoked ca cli revoked; mk foreign foreign-ca cli root
# CRL revoking "revoked"
mkdir -p crldb; : > crldb/index.txt; echo 01 > crldb/crlnumber
cat > crl.cnf <<'C'
[ca]
default_ca = d
[d]
database = crldb/index.txt
crlnumber = crldb/crlnumber
default_md = sha256
default_crl_days = 2
C
openssl ca -config crl.cnf -cert ca.crt -keyfile ca.key -revoke revoked.crt 2>/dev/null
openssl ca -config crl.cnf -cert ca.crt -keyfile ca.key -gencrl -out ca.crl 2>/dev/null
