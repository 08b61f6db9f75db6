// Entra ID side, with the Microsoft Graph Bicep extension (bicepconfig.json pins its types).
// The deployer needs Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All (e.g. Cloud
// Application Administrator + Privileged Role Administrator). Without them, run
// scripts/entra-setup.sh instead and set MANAGE_ENTRA_APPS=false.
extension microsoftGraphV1

@description('Prefix of the app registrations uniqueName and displayName.')
param appName string
@description('App ID URI of the server app (AAD_RESOURCE_URI).')
param resourceUri string
@description('App role value required on admin endpoints (ADMIN_ROLE).')
param adminRole string
@description('Comma-separated object ids of users or groups given the admin app role.')
param adminPrincipalIds string
param clientRedirectUris array
@description('Principal id of the function app managed identity.')
param identityPrincipalId string

var graphAppId = '00000003-0000-0000-c000-000000000000'
// Microsoft Graph application permission User.Read.All (same id in every tenant).
var userReadAllRoleId = 'df021288-bdef-4463-88db-98f22de89214'
// Microsoft Graph application permission Device.Read.All: device proofs read the device's record.
var deviceReadAllRoleId = '7438b122-aefc-4978-80ed-43db9fcc7715'
var bundleScopeValue = 'Bundle.Request'
var bundleScopeId = guid(appName, 'oauth2PermissionScope', bundleScopeValue)
var adminRoleId = guid(appName, 'appRole', adminRole)
var adminPrincipals = empty(adminPrincipalIds) ? [] : split(adminPrincipalIds, ',')

// The API devices and admins call: v2 tokens carry aud = its appId; v1 tokens aud = resourceUri.
resource serverApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: '${appName}-server'
  displayName: 'ConfigMgr Cloud Bootstrap API (${appName})'
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    resourceUri
  ]
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: bundleScopeId
        value: bundleScopeValue
        type: 'Admin'
        isEnabled: true
        adminConsentDisplayName: 'Request ConfigMgr install bundles'
        adminConsentDescription: 'Lets the ConfigMgr bootstrap client fetch signed ccmsetup bundles and report device status for the signed-in user.'
      }
    ]
  }
  appRoles: [
    {
      id: adminRoleId
      value: adminRole
      displayName: 'ConfigMgr Cloud Bootstrap administrator'
      description: 'Reads device status reports and discovery runs.'
      allowedMemberTypes: [
        'User'
      ]
      isEnabled: true
    }
  ]
}

resource serverPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: serverApp.appId
}

// The native (public) client the device script signs in with: AADCLIENTAPPID.
resource clientApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: '${appName}-client'
  displayName: 'ConfigMgr Cloud Bootstrap client (${appName})'
  signInAudience: 'AzureADMyOrg'
  isFallbackPublicClient: true
  publicClient: {
    redirectUris: clientRedirectUris
  }
  requiredResourceAccess: [
    {
      resourceAppId: serverApp.appId
      resourceAccess: [
        {
          id: bundleScopeId
          type: 'Scope'
        }
      ]
    }
  ]
}

resource clientPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: clientApp.appId
}

// Tenant-wide admin consent: the client may request Bundle.Request for every user.
resource clientConsent 'Microsoft.Graph/oauth2PermissionGrants@v1.0' = {
  clientId: clientPrincipal.id
  consentType: 'AllPrincipals'
  resourceId: serverPrincipal.id
  scope: bundleScopeValue
}

resource graphPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

// Discovery reads users through Graph as the managed identity: application permission User.Read.All.
resource identityUserReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: userReadAllRoleId
  principalId: identityPrincipalId
  resourceId: graphPrincipal.id
}

// Device proofs read the proven device (accountEnabled, trustType, keys): Device.Read.All.
resource identityDeviceReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: deviceReadAllRoleId
  principalId: identityPrincipalId
  resourceId: graphPrincipal.id
}

resource adminAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for principalId in adminPrincipals: {
  appRoleId: adminRoleId
  principalId: trim(principalId)
  resourceId: serverPrincipal.id
}]

output serverAppId string = serverApp.appId
output clientAppId string = clientApp.appId
output serverPrincipalId string = serverPrincipal.id
output clientPrincipalId string = clientPrincipal.id
