#!/bin/sh
# azd preprovision: the ConfigMgr values have no sensible default; stop with one line per
# missing value (and the command that sets it) instead of a half-configured deployment.
set -eu
missing=0
require() {
  eval "value=\${$1:-}"
  if [ -z "$value" ]; then
    echo "preprovision: $1 is not set: azd env set $1 '$2'" >&2
    missing=1
  fi
}
require CCM_HOSTNAME 'SCCMPROXYCONTOSO.CLOUDAPP.NET/CCM_Proxy_ServerAuth/72457598037527932'
require SMS_SITE_CODE 'ABC'
require AAD_TENANT_NAME 'contoso.onmicrosoft.com'
if [ "${MANAGE_ENTRA_APPS:-true}" = "false" ]; then
  require AAD_SERVER_APP_ID '<from scripts/entra-setup.sh>'
  require AAD_CLIENT_APP_ID '<from scripts/entra-setup.sh>'
  require AAD_RESOURCE_URI '<from scripts/entra-setup.sh>'
fi
case "${SMS_SITE_CODE:-ABC}" in
  [A-Z0-9][A-Z0-9][A-Z0-9]) ;;
  *) echo "preprovision: SMS_SITE_CODE must be three characters A-Z/0-9, got '${SMS_SITE_CODE}'" >&2; missing=1 ;;
esac
exit "$missing"
