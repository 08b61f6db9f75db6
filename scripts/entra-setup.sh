#!/usr/bin/env bash
# Entra ID setup with the Azure CLI: the same objects as infra/modules/entra.bicep, for tenants
# where the Microsoft Graph Bicep extension cannot be used (the deployer lacks
# Application.ReadWrite.All / AppRoleAssignment.ReadWrite.All, or policy forbids it).
# Idempotent: finds objects by display name and only adds what is missing.
#
#   az login --tenant <tenant>            # an account allowed to register apps and grant consent
#   scripts/entra-setup.sh apps           # before `azd provision`: server + client apps, consent
#   azd env set MANAGE_ENTRA_APPS false   # (the script does this for you)
#   azd provision
#   scripts/entra-setup.sh grants         # after: Graph User.Read.All and Device.Read.All for
#                                         # the managed identity,
#                                         # ADMIN_ROLE for BOOTSTRAP_ADMIN_PRINCIPAL_IDS
#
# Reads AZURE_ENV_NAME, ADMIN_ROLE, AAD_RESOURCE_URI, BOOTSTRAP_ADMIN_PRINCIPAL_IDS and
# MANAGED_IDENTITY_PRINCIPAL_ID from the azd environment when azd is installed.
set -euo pipefail

GRAPH=https://graph.microsoft.com/v1.0
GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
USER_READ_ALL=df021288-bdef-4463-88db-98f22de89214   # Graph application permission User.Read.All
DEVICE_READ_ALL=7438b122-aefc-4978-80ed-43db9fcc7715 # Graph application permission Device.Read.All
SCOPE=Bundle.Request

if command -v azd >/dev/null 2>&1; then
  eval "$(azd env get-values 2>/dev/null | sed -n 's/^\([A-Z_][A-Z0-9_]*\)=/export \1=/p')"
fi
ENV_NAME=${AZURE_ENV_NAME:?set AZURE_ENV_NAME (azd env new) first}
APP_NAME="${ENV_NAME}-cmbootstrap"
ADMIN_ROLE=${ADMIN_ROLE:-Bootstrap.Admin}
TENANT_ID=$(az account show --query tenantId --output tsv)
RESOURCE_URI=${AAD_RESOURCE_URI:-api://$TENANT_ID/$APP_NAME}

new_id() { python3 -c 'import uuid; print(uuid.uuid4())'; }
app_id_by_name() {
  az ad app list --filter "displayName eq '$1'" --query '[0].appId' --output tsv
}
ensure_principal() {  # service principal object id for an appId, created if missing
  local id
  id=$(az ad sp list --filter "appId eq '$1'" --query '[0].id' --output tsv)
  [ -n "$id" ] || id=$(az ad sp create --id "$1" --query id --output tsv)
  echo "$id"
}
set_env() { command -v azd >/dev/null 2>&1 && azd env set "$1" "$2" >/dev/null; echo "$1=$2"; }

ensure_apps() {
  local server_name="ConfigMgr Cloud Bootstrap API ($APP_NAME)"
  local client_name="ConfigMgr Cloud Bootstrap client ($APP_NAME)"
  local server_app client_app server_object scope_id role_id server_sp client_sp

  server_app=$(app_id_by_name "$server_name")
  if [ -z "$server_app" ]; then
    server_app=$(az ad app create --display-name "$server_name" --sign-in-audience AzureADMyOrg \
      --query appId --output tsv)
  fi
  server_object=$(az ad app show --id "$server_app" --query id --output tsv)
  # Keep existing ids so tokens and consent survive a re-run.
  scope_id=$(az ad app show --id "$server_app" \
    --query "api.oauth2PermissionScopes[?value=='$SCOPE'].id | [0]" --output tsv)
  [ -n "$scope_id" ] || scope_id=$(new_id)
  role_id=$(az ad app show --id "$server_app" \
    --query "appRoles[?value=='$ADMIN_ROLE'].id | [0]" --output tsv)
  [ -n "$role_id" ] || role_id=$(new_id)
  az rest --method PATCH --url "$GRAPH/applications/$server_object" \
    --headers Content-Type=application/json --body "{
      \"identifierUris\": [\"$RESOURCE_URI\"],
      \"api\": {\"requestedAccessTokenVersion\": 2, \"oauth2PermissionScopes\": [{
        \"id\": \"$scope_id\", \"value\": \"$SCOPE\", \"type\": \"Admin\", \"isEnabled\": true,
        \"adminConsentDisplayName\": \"Request ConfigMgr install bundles\",
        \"adminConsentDescription\": \"Lets the ConfigMgr bootstrap client fetch signed ccmsetup bundles and report device status for the signed-in user.\"}]},
      \"appRoles\": [{\"id\": \"$role_id\", \"value\": \"$ADMIN_ROLE\", \"isEnabled\": true,
        \"allowedMemberTypes\": [\"User\"], \"displayName\": \"ConfigMgr Cloud Bootstrap administrator\",
        \"description\": \"Reads device status reports and discovery runs.\"}]}"
  server_sp=$(ensure_principal "$server_app")

  client_app=$(app_id_by_name "$client_name")
  if [ -z "$client_app" ]; then
    client_app=$(az ad app create --display-name "$client_name" --sign-in-audience AzureADMyOrg \
      --is-fallback-public-client true \
      --public-client-redirect-uris https://login.microsoftonline.com/common/oauth2/nativeclient http://localhost \
      --query appId --output tsv)
  fi
  az rest --method PATCH --url "$GRAPH/applications/$(az ad app show --id "$client_app" --query id --output tsv)" \
    --headers Content-Type=application/json --body "{\"requiredResourceAccess\": [{
      \"resourceAppId\": \"$server_app\", \"resourceAccess\": [{\"id\": \"$scope_id\", \"type\": \"Scope\"}]}]}"
  client_sp=$(ensure_principal "$client_app")

  # Tenant-wide admin consent for the client to request Bundle.Request.
  if [ -z "$(az rest --method GET --url "$GRAPH/oauth2PermissionGrants?\$filter=clientId eq '$client_sp' and resourceId eq '$server_sp'" --query 'value[0].id' --output tsv)" ]; then
    az rest --method POST --url "$GRAPH/oauth2PermissionGrants" \
      --headers Content-Type=application/json --body "{\"clientId\": \"$client_sp\",
        \"consentType\": \"AllPrincipals\", \"resourceId\": \"$server_sp\", \"scope\": \"$SCOPE\"}" \
      --output none
  fi

  set_env MANAGE_ENTRA_APPS false
  set_env AAD_SERVER_APP_ID "$server_app"
  set_env AAD_CLIENT_APP_ID "$client_app"
  set_env AAD_RESOURCE_URI "$RESOURCE_URI"
}

assign_role() {  # principal, resource service principal, app role id
  local existing
  existing=$(az rest --method GET --url "$GRAPH/servicePrincipals/$2/appRoleAssignedTo" \
    --query "value[?principalId=='$1' && appRoleId=='$3'].id | [0]" --output tsv)
  if [ -z "$existing" ]; then
    az rest --method POST --url "$GRAPH/servicePrincipals/$2/appRoleAssignedTo" \
      --headers Content-Type=application/json \
      --body "{\"principalId\": \"$1\", \"resourceId\": \"$2\", \"appRoleId\": \"$3\"}" --output none
  fi
  echo "app role $3 on $2 -> $1"
}

ensure_grants() {
  local identity=${MANAGED_IDENTITY_PRINCIPAL_ID:?run azd provision first (it outputs MANAGED_IDENTITY_PRINCIPAL_ID)}
  local graph_sp server_sp role_id principal
  graph_sp=$(az ad sp list --filter "appId eq '$GRAPH_APP_ID'" --query '[0].id' --output tsv)
  assign_role "$identity" "$graph_sp" "$USER_READ_ALL"
  assign_role "$identity" "$graph_sp" "$DEVICE_READ_ALL"
  server_sp=$(az ad sp list --filter "appId eq '${AAD_SERVER_APP_ID:?run entra-setup.sh apps first}'" \
    --query '[0].id' --output tsv)
  role_id=$(az ad app show --id "$AAD_SERVER_APP_ID" \
    --query "appRoles[?value=='$ADMIN_ROLE'].id | [0]" --output tsv)
  local admins=${BOOTSTRAP_ADMIN_PRINCIPAL_IDS:-}
  for principal in ${admins//,/ }; do
    assign_role "$principal" "$server_sp" "$role_id"
  done
}

case "${1:-}" in
  apps) ensure_apps ;;
  grants) ensure_grants ;;
  *) echo "usage: $0 apps|grants" >&2; exit 2 ;;
esac
