#!/bin/sh
# azd postdeploy: subscribe `discovery_events` to Event Grid (infra/events.bicep). Runs after the
# code is deployed because Event Grid validates an AzureFunction endpoint against the live function.
# Re-run any time (idempotent): `azd hooks run postdeploy`.
set -eu
: "${AZURE_RESOURCE_GROUP:?run azd provision first}"
: "${AZURE_FUNCTION_APP_NAME:?run azd provision first}"
: "${DISCOVERY_TOPIC_NAME:?run azd provision first}"
: "${STORAGE_ACCOUNT_NAME:?run azd provision first}"

# The host indexes functions shortly after a deployment: wait (bounded) until it lists ours.
deadline=$(( $(date +%s) + 300 ))
until az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name discovery_events \
    --only-show-errors --output none 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "postdeploy: discovery_events is not listed on $AZURE_FUNCTION_APP_NAME after 5 minutes" >&2
    exit 1
  fi
  sleep 10
done

az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name discovery-events \
  --template-file infra/events.bicep \
  --parameters functionAppName="$AZURE_FUNCTION_APP_NAME" \
               discoveryTopicName="$DISCOVERY_TOPIC_NAME" \
               storageAccountName="$STORAGE_ACCOUNT_NAME" \
               graphPartnerTopicName="${GRAPH_PARTNER_TOPIC_NAME:-}" \
  --only-show-errors --output none
echo "postdeploy: discovery_events subscribed to $DISCOVERY_TOPIC_NAME${GRAPH_PARTNER_TOPIC_NAME:+ and $GRAPH_PARTNER_TOPIC_NAME}"
echo "postdeploy: bundles at ${BUNDLE_URL:-?}, JWKS at ${JWKS_URL:-?}"
