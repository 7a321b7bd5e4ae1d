#!/bin/sh
# A demo PKI for examples/mtls.toml, made with openssl into examples/certs/mtls/ (or $1).
# The files committed there are EXAMPLES ONLY (their keys are public): never deploy them.
#   ca.pem / ca.key          one CA for the server and the clients (demo only!)
#   server.pem / server.key  localhost, api.example.test
#   client.pem / client.key  CN=partner-a,O=Example + URI SAN spiffe://example.org/ns/orders/sa/api
#   revoked.pem / revoked.key  a client listed in ca.crl.pem
#   ca.crl.pem               the CA's CRL (re-running this script renews it; to revoke
#                            another: openssl ca -config ca.cnf -revoke X.pem, then re-run)
# Then:  ringgate run -c examples/mtls.toml   and the curl commands printed at the end.
set -eu
dir=${1:-$(dirname "$0")/certs/mtls}
mkdir -p "$dir"
cd "$dir"

cat > ca.cnf <<'CNF'
[ca]
default_ca = demo
[demo]
database = index.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_crl_days = 3650
default_days = 3650
policy = any
serial = serial
# A crlNumber makes a v2 CRL: webpki (rustls) reads no v1 CRLs.
crlnumber = crlnumber
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
[any]
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, DNS:api.example.test, IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:spiffe://example.org/ns/orders/sa/api
authorityKeyIdentifier = keyid
CNF

if [ ! -f ca.key ]; then
  : > index.txt
  echo 1000 > serial
  echo 1000 > crlnumber
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=ringgate demo CA" -keyout ca.key -out ca.pem -extensions v3_ca -config ca.cnf 2>/dev/null
  leaf() { # name subject extensions
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
      -keyout "$1.key" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile ca.cnf -extensions "$3" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr"
  }
  leaf server "/CN=localhost" server
  leaf client "/O=Example/CN=partner-a" client
  leaf revoked "/O=Example/CN=partner-revoked" client
  openssl ca -config ca.cnf -revoke revoked.pem -crl_reason keyCompromise 2>/dev/null
fi
openssl ca -config ca.cnf -gencrl -out ca.crl.pem 2>/dev/null
echo "PKI in $(pwd). With ringgate running examples/mtls.toml:"
echo "  curl --cacert $(pwd)/ca.pem --cert $(pwd)/client.pem --key $(pwd)/client.key https://localhost:8443/orders/"
echo "  curl --cacert $(pwd)/ca.pem https://localhost:8443/public/        # optional: no certificate needed here"
echo "  curl --cacert $(pwd)/ca.pem --cert $(pwd)/revoked.pem --key $(pwd)/revoked.key https://localhost:8443/  # 403: revoked (verify = \"optional\" lets it in unverified; \"required\" refuses the handshake)"
