// ConfigMgr Cloud Bootstrap: everything `azd up` provisions.
// - modules/app.bicep: identity, storage (tables, queues, deployment container), Key Vault and the
//   bundle signing key, monitoring, Event Grid topic, the Flex Consumption function app, roles.
// - modules/entra.bicep: server and client app registrations, admin consent, Graph User.Read.All
//   and Device.Read.All for the managed identity (Microsoft Graph Bicep extension). Skip it with
//   MANAGE_ENTRA_APPS=false after running scripts/entra-setup.sh.
// - events.bicep (not here): Event Grid subscriptions to `discovery_events`, deployed by the
//   postdeploy hook because an AzureFunction endpoint must exist before it can be subscribed.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name: names and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region (must offer Flex Consumption).')
param location string

@description('Object id of whoever runs azd (operators): gets data roles for the Operations runbook. Empty to skip.')
param deployerPrincipalId string = ''

@description('Create the Entra app registrations with the Microsoft Graph Bicep extension. False: pass the ids made by scripts/entra-setup.sh.')
param manageEntraApps bool = true

@description('AAD_SERVER_APP_ID when manageEntraApps is false.')
param serverAppId string = ''

@description('AAD_CLIENT_APP_ID when manageEntraApps is false.')
param clientAppId string = ''

@description('AAD_RESOURCE_URI: the server app App ID URI. Default api://<tenant id>/<env>-cmbootstrap.')
param resourceUri string = ''

@minLength(3)
@description('AAD_TENANT_NAME, e.g. contoso.onmicrosoft.com (AADTENANTNAME).')
param tenantName string

@description('Comma-separated object ids of users or groups that get the ADMIN_ROLE app role.')
param adminPrincipalIds string = ''

@description('Redirect URIs of the native client app used by devices.')
param clientRedirectUris array = [
  'https://login.microsoftonline.com/common/oauth2/nativeclient'
  'http://localhost'
]

@minLength(4)
@description('CCM_HOSTNAME: CMG host and path, no scheme.')
param ccmHostname string

@minLength(3)
@maxLength(3)
@description('SMS_SITE_CODE: three-character site code.')
param siteCode string

@description('SMS_MP: lookup management point (empty: not emitted).')
param managementPoint string = ''

@description('CCMSETUP_SOURCE: /Source: folder on the device (empty: not emitted).')
param ccmsetupSource string = ''

@description('CCMSETUP_NO_CRL_CHECK: emit /NoCrlCheck.')
param noCrlCheck bool = false

@minValue(1)
@maxValue(1440)
@description('BUNDLE_TTL_MINUTES: bundle lifetime.')
param bundleTtlMinutes int = 30

@description('BUNDLE_SIGNING_KEY_ID: the versioned key id that signs (README "Rotating the bundle-signing key"). Empty only on the first provision: the key created then; its versioned id is output as BUNDLE_SIGNING_KEY_ID, which azd keeps in the environment and passes back on every later provision, so a version the vault makes later never signs until an operator rotates.')
param signingKeyId string = ''

@description('BUNDLE_SIGNING_NEXT_KEY_ID: versioned id of the second key /api/jwks publishes during a rotation (the next key, then the previous one). Empty outside one.')
param signingNextKeyId string = ''

@description('DISCOVERY_FULL_SCHEDULE (NCRONTAB, six fields).')
param discoveryFullSchedule string = '0 0 2 * * 0'

@description('DISCOVERY_DELTA_SCHEDULE (NCRONTAB, six fields).')
param discoveryDeltaSchedule string = '0 */5 * * * *'

@minValue(5)
@maxValue(3600)
@description('DISCOVERY_TIME_BUDGET_SECONDS: checkpoint and continue after this long.')
param discoveryTimeBudgetSeconds int = 240

@minValue(5)
@maxValue(3600)
@description('DISCOVERY_LEASE_SECONDS: lease of a discovery run.')
param discoveryLeaseSeconds int = 120

@minValue(5)
@maxValue(10080)
@description('DEVICE_STUCK_MINUTES: the failure explainer calls a device stuck after this long at bundle-received or installing.')
param deviceStuckMinutes int = 120

@description('Extra SPA redirect URIs of the admin console (custom domains): https://<host>/api/console.')
param consoleRedirectUris array = []

@description('GRAPH_SUBSCRIPTION_SCHEDULE (NCRONTAB, six fields): create and renew Graph subscriptions.')
param graphSubscriptionSchedule string = '0 17 */6 * * *'

@description('Graph change notifications through Event Grid: the app keeps its own Graph subscriptions, delivered to a partner topic that the azd postdeploy hook activates once. false: discovery runs on its timers only (GRAPH_NOTIFICATION_URL unset).')
param graphEvents bool = true

@description('Name of the Microsoft Graph partner topic. Empty: graph-<environment name>.')
param graphPartnerTopicName string = ''

@minValue(0)
@maxValue(600)
@description('DISCOVERY_COALESCE_SECONDS: a run for requests that came during another run waits this long, so a burst of events becomes one run.')
param discoveryCoalesceSeconds int = 15

@description('DISCOVERY_GROUPS: all (every security group), none, or a comma list of group object ids.')
param discoveryGroups string = 'none'

@minLength(1)
@description('ADMIN_ROLE: app role required on admin endpoints.')
param adminRole string = 'Bootstrap.Admin'

@allowed(['device', 'user', 'device+user'])
@description('BOOTSTRAP_AUTH: what a device presents on /api/bundle and /api/reports.')
param bootstrapAuth string = 'device'

@description('DEVICE_TRUST_TYPES: Entra trustType values accepted for a proven device (comma list).')
param deviceTrustTypes string = 'AzureAd,ServerAd'

@description('PUBLIC_HOSTNAMES: extra host names devices use for the app (custom domains, Front Door), comma list.')
param publicHostnames string = ''

@description('DEVICE_SCOPE: delegated scope a user token must carry on device endpoints.')
param deviceScope string = 'Bundle.Request'

@description('AAD_AUTHORITY_HOST (sovereign clouds).')
param authorityHost string = 'https://login.microsoftonline.com'

@description('GRAPH_BASE_URL (sovereign clouds).')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('Flex Consumption scale-out ceiling.')
param maximumInstanceCount int = 40

var resourceToken = toLower(uniqueString(subscription().id, rg.id, environmentName))
var tags = {
  'azd-env-name': environmentName
  workload: 'configmgr-cloud-bootstrap'
}
var appName = '${environmentName}-cmbootstrap'
// Where Graph delivers change and lifecycle notifications: the partner topic, created by Graph
// on the first subscription the app makes (graph_subscriptions) and activated by the azd hook.
var graphTopic = !graphEvents ? '' : empty(graphPartnerTopicName) ? 'graph-${environmentName}' : graphPartnerTopicName
var graphNotificationUrl = empty(graphTopic) ? '' : 'EventGrid:?azuresubscriptionid=${subscription().subscriptionId}&resourcegroup=${rg.name}&partnertopic=${graphTopic}&location=${location}'
var effectiveResourceUri = empty(resourceUri) ? 'api://${tenant().tenantId}/${appName}' : resourceUri

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

// The managed identity exists before the Entra module needs its principal id.
module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${appName}'
    location: location
    tags: tags
  }
}

module entra 'modules/entra.bicep' = if (manageEntraApps) {
  name: 'entra'
  scope: rg
  params: {
    appName: appName
    resourceUri: effectiveResourceUri
    adminRole: adminRole
    adminPrincipalIds: adminPrincipalIds
    clientRedirectUris: clientRedirectUris
    // The console signs admins in on the function app's default host (modules/app.bicep names
    // it func-cmboot-<resourceToken>), plus any custom domain listed.
    consoleRedirectUris: concat(['https://func-cmboot-${resourceToken}.azurewebsites.net/api/console'], consoleRedirectUris)
    identityPrincipalId: identity.outputs.principalId
  }
}

module app 'modules/app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    identityName: identity.outputs.name
    deployerPrincipalId: deployerPrincipalId
    maximumInstanceCount: maximumInstanceCount
    signingKeyId: signingKeyId
    appSettings: {
      AZURE_FUNCTIONS_ENVIRONMENT: 'Production'
      AAD_TENANT_ID: tenant().tenantId
      AAD_TENANT_NAME: tenantName
      AAD_SERVER_APP_ID: manageEntraApps ? entra.outputs.serverAppId : serverAppId
      AAD_RESOURCE_URI: effectiveResourceUri
      AAD_CLIENT_APP_ID: manageEntraApps ? entra.outputs.clientAppId : clientAppId
      AAD_AUTHORITY_HOST: authorityHost
      GRAPH_BASE_URL: graphBaseUrl
      CCM_HOSTNAME: ccmHostname
      SMS_SITE_CODE: siteCode
      SMS_MP: managementPoint
      CCMSETUP_SOURCE: ccmsetupSource
      CCMSETUP_NO_CRL_CHECK: noCrlCheck ? 'true' : 'false'
      BUNDLE_TTL_MINUTES: string(bundleTtlMinutes)
      BUNDLE_SIGNING_NEXT_KEY_ID: signingNextKeyId
      DISCOVERY_FULL_SCHEDULE: discoveryFullSchedule
      DISCOVERY_DELTA_SCHEDULE: discoveryDeltaSchedule
      DISCOVERY_TIME_BUDGET_SECONDS: string(discoveryTimeBudgetSeconds)
      DISCOVERY_LEASE_SECONDS: string(discoveryLeaseSeconds)
      DEVICE_STUCK_MINUTES: string(deviceStuckMinutes)
      ADMIN_ROLE: adminRole
      BOOTSTRAP_AUTH: bootstrapAuth
      DEVICE_TRUST_TYPES: deviceTrustTypes
      PUBLIC_HOSTNAMES: publicHostnames
      DEVICE_SCOPE: deviceScope
      GRAPH_SUBSCRIPTION_SCHEDULE: graphSubscriptionSchedule
      GRAPH_NOTIFICATION_URL: graphNotificationUrl
      DISCOVERY_GROUPS: discoveryGroups
      DISCOVERY_COALESCE_SECONDS: string(discoveryCoalesceSeconds)
    }
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output FUNCTION_APP_URL string = app.outputs.functionAppUrl
output JWKS_URL string = '${app.outputs.functionAppUrl}/api/jwks'
output BUNDLE_URL string = '${app.outputs.functionAppUrl}/api/bundle'
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output STORAGE_ACCOUNT_NAME string = app.outputs.storageAccountName
output KEY_VAULT_NAME string = app.outputs.keyVaultName
output SIGNING_KEY_LATEST_ID string = app.outputs.signingKeyLatestId
// The version that signs, kept by azd and passed back as signingKeyId: pinned explicitly.
output BUNDLE_SIGNING_KEY_ID string = app.outputs.signingKeyId
output JWKS_SIGNED_URL string = '${app.outputs.functionAppUrl}/api/jwks/signed'
output DISCOVERY_TOPIC_NAME string = app.outputs.discoveryTopicName
output DISCOVERY_TOPIC_ENDPOINT string = app.outputs.discoveryTopicEndpoint
output GRAPH_PARTNER_TOPIC_NAME string = graphTopic
output AAD_TENANT_ID string = tenant().tenantId
output AAD_SERVER_APP_ID string = manageEntraApps ? entra.outputs.serverAppId : serverAppId
output AAD_CLIENT_APP_ID string = manageEntraApps ? entra.outputs.clientAppId : clientAppId
output AAD_RESOURCE_URI string = effectiveResourceUri
